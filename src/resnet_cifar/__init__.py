"""resnet-cifar: Residual Networks from scratch on CIFAR-10."""

__version__ = "0.1.0"
