"""CIFAR-10 on disk and in memory: official-format readers with checksums, locating/downloading, splits,
batched augmentation."""

from resnet_cifar.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Augmentation,
    cutout,
    normalize,
    random_crop,
    random_flip,
)
from resnet_cifar.data.cifar10 import CLASSES, Split, load_split
from resnet_cifar.data.locate import Dataset, find_dataset, load_cifar10, safe_extract
from resnet_cifar.data.splits import balanced_subset, subset, train_val_split

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "CLASSES", "Augmentation", "Dataset", "Split", "balanced_subset", "cutout",
    "find_dataset", "load_cifar10", "load_split", "normalize", "random_crop", "random_flip", "safe_extract", "subset",
    "train_val_split",
]
