"""Readers for the two official CIFAR-10 formats, each split as one uint8 tensor. The python version's pickles are read
only after their MD5 matches, by an unpickler that accepts only the numpy constructors they need."""

from __future__ import annotations

import io
import pickle
import pickletools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np
import torch

from resnet_cifar.data.checksums import BINARY_FILES, BINARY_RECORD_BYTES, PYTHON_FILES, FileCheck, verify_file
from resnet_cifar.errors import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SPLIT_FILES = {
    "binary": {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
    "python": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
}


class Split(NamedTuple):
    """One split in memory: images N x 3 x 32 x 32 uint8, labels N int64 (unpacks as `images, labels`)."""

    images: torch.Tensor
    labels: torch.Tensor


def detect_format(folder: Path) -> str | None:
    """'binary' or 'python' if `folder` holds that version's first training batch, else None."""
    if (folder / "data_batch_1.bin").is_file() or (folder / "test_batch.bin").is_file():
        return "binary"
    if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
        return "python"
    return None


def parse_binary(raw: bytes, name: str) -> Split:
    if len(raw) % BINARY_RECORD_BYTES:
        raise DataError(f"{name}: size {len(raw):,} is not a multiple of the {BINARY_RECORD_BYTES}-byte record")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, BINARY_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.size and labels.max() > 9:
        raise DataError(f"{name}: label {labels.max()} out of range 0-9")
    images = records[:, 1:].reshape(-1, 3, 32, 32)
    return Split(torch.from_numpy(images.copy()), torch.from_numpy(labels))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, and refuses every other global (no code execution)."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at pickle protocol 2; it only encodes a string
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


# A CIFAR-10 batch memoises a handful of objects. A memo index is an array index for the unpickler, so a 6-byte
# file asking to store at index 1.2e9 made it allocate ~19 GB (found by tests/test_fuzz.py); indices are checked
# before anything is unpickled.
MAX_MEMO_INDEX = 100_000


def _check_memo_indices(raw: bytes) -> None:
    for opcode, argument, _ in pickletools.genops(raw):
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(argument) > MAX_MEMO_INDEX:
            raise pickle.UnpicklingError(f"memo index {argument} is implausible for a CIFAR-10 batch")


def parse_python(raw: bytes, name: str) -> Split:
    try:
        _check_memo_indices(raw)
        batch = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as error:  # any failure to unpickle is a bad file, reported by name
        raise DataError(f"{name}: not a CIFAR-10 python batch ({error})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{name}: not a CIFAR-10 python batch (missing b'data' or b'labels')")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise DataError(f"{name}: unexpected array shapes {data.shape} / {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{name}: labels out of range 0-9")
    return Split(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels))


def _read_verified(path: Path, check: FileCheck | None) -> bytes:
    if check is not None:
        verify_file(path, check)
    elif not path.is_file():
        raise DataError(f"missing file {path}")
    return path.read_bytes()


def load_split(
    folder: Path | str, split: str, *, fmt: str | None = None, checksums: dict[str, FileCheck] | None = None
) -> Split:
    """Verify and read one split ("train" or "test") from a folder of the binary or python version.

    `checksums` replaces the published table (tests use it for small fabricated files); a file missing from a
    given table is read without verification only when the table is given explicitly.
    """
    folder = Path(folder)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    fmt = fmt or detect_format(folder)
    if fmt is None:
        raise DataError(f"{folder} holds neither the binary nor the python version of CIFAR-10")
    table = checksums if checksums is not None else (BINARY_FILES if fmt == "binary" else PYTHON_FILES)
    names = SPLIT_FILES[fmt][split]
    parse = parse_binary if fmt == "binary" else parse_python

    def read(name: str) -> Split:
        return parse(_read_verified(folder / name, table.get(name)), name)

    # hashlib and file reads release the GIL, so the batches verify in parallel on all cores.
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        parts = list(pool.map(read, names))
    return Split(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
