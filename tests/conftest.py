import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "cifar-10-batches-bin"


def real_data_dir() -> Path | None:
    """The real CIFAR-10 binary folder: $RESNET_CIFAR_DATA, else ../shared beside the repository."""
    candidate = Path(os.environ.get("RESNET_CIFAR_DATA") or SHARED)
    return candidate if (candidate / "data_batch_1.bin").is_file() else None


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    folder = real_data_dir()
    if folder is None:
        pytest.skip("real CIFAR-10 not available (set RESNET_CIFAR_DATA)")
    return folder


@pytest.fixture(scope="session")
def cifar_train(cifar_dir):
    from resnet_cifar.data import load_split

    return load_split(cifar_dir, "train")


@pytest.fixture(scope="session")
def cifar_test(cifar_dir):
    from resnet_cifar.data import load_split

    return load_split(cifar_dir, "test")
