"""`python -m resnet_cifar.models`: print the model table (`--write-cache`: recompute it into the shipped file)."""

import json
import sys

from resnet_cifar.models.summary import CACHE, cached_model_table, format_table, model_table

if __name__ == "__main__":
    if "--write-cache" in sys.argv:
        CACHE.write_text(json.dumps(model_table(), indent=1) + "\n")
    print(format_table(cached_model_table()))
