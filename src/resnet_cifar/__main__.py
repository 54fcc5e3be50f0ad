"""`python -m resnet_cifar ...` (also what torchrun launches): the same entry as the `resnet-cifar` command."""

import sys

from resnet_cifar.entry import main

if __name__ == "__main__":
    sys.exit(main())
