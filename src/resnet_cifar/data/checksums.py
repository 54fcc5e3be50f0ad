"""Published checksums of the official CIFAR-10 files, and verification that names the file on failure.

Sources: https://www.cs.toronto.edu/~kriz/cifar.html (archive MD5s); the per-file MD5s of the python version are
the ones torchvision and many others publish; the binary-version per-file MD5s match `cifar-10-binary.tar.gz`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from resnet_cifar.errors import DataError

BINARY_RECORD_BYTES = 1 + 3 * 32 * 32  # one label byte, then 1024 R, 1024 G, 1024 B bytes
BINARY_BATCH_BYTES = 10_000 * BINARY_RECORD_BYTES


@dataclass(frozen=True)
class FileCheck:
    md5: str
    size: int | None = None  # bytes; None where no size is published


# Binary version: folder `cifar-10-batches-bin`.
BINARY_FILES: dict[str, FileCheck] = {
    "data_batch_1.bin": FileCheck("5dd7e06a14cb22eb9f671a540d1b7c25", BINARY_BATCH_BYTES),
    "data_batch_2.bin": FileCheck("5ea93a67294ea407fff1d09f752e9692", BINARY_BATCH_BYTES),
    "data_batch_3.bin": FileCheck("942cd6a4bcdd0dd3c604fbe906cb4421", BINARY_BATCH_BYTES),
    "data_batch_4.bin": FileCheck("ae636b3ba5c66a11e91e8cb52e771fcb", BINARY_BATCH_BYTES),
    "data_batch_5.bin": FileCheck("53f37980c15c3d472c316c40844f3f0d", BINARY_BATCH_BYTES),
    "test_batch.bin": FileCheck("803d5f7f4d78ea53de84dbe85f74fb6d", BINARY_BATCH_BYTES),
}

# Python version: folder `cifar-10-batches-py` (pickled dicts; only unpickled after the checksum matches).
PYTHON_FILES: dict[str, FileCheck] = {
    "data_batch_1": FileCheck("c99cafc152244af753f735de768cd75f"),
    "data_batch_2": FileCheck("d4bba439e000b95fd0a9bffe97cbabec"),
    "data_batch_3": FileCheck("54ebc095f3ab1f0389bbae665268c751"),
    "data_batch_4": FileCheck("634d18415352ddfa80567beed471001a"),
    "data_batch_5": FileCheck("482c414d41f54cd18b22e5b47cb7c3cb"),
    "test_batch": FileCheck("40351d587109b95175f43aff81a1287e"),
}

ARCHIVES: dict[str, FileCheck] = {
    "cifar-10-binary.tar.gz": FileCheck("c32a1d4ab5d03f1284b67883e8d87530"),
    "cifar-10-python.tar.gz": FileCheck("c58f30108f718f92721af3b95e74349a"),
}


def md5_file(path: Path, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected: FileCheck) -> None:
    """Raise DataError naming `path` unless it exists with the expected size and MD5."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file {path} (expected MD5 {expected.md5})")
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        kind = "truncated" if size < expected.size else "too large"
        raise DataError(
            f"{path.name} is {kind}: expected {expected.size:,} bytes, found {size:,} ({path}); "
            f"expected MD5 {expected.md5}. Delete it and download the data again."
        )
    actual = md5_file(path)
    if actual != expected.md5:
        raise DataError(
            f"{path.name} is corrupted: expected MD5 {expected.md5}, got {actual} ({size:,} bytes, {path}). "
            "Delete it and download the data again."
        )
