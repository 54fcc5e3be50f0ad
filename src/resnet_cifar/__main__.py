"""`python -m resnet_cifar ...` (also what torchrun launches)."""

import sys

from resnet_cifar.cli import main

if __name__ == "__main__":
    sys.exit(main())
