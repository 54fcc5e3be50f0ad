"""Small fabricated CIFAR-10 files in both official formats, with their checksum tables (for injection)."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from resnet_cifar.data.checksums import FileCheck

BINARY_NAMES = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
PYTHON_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def fake_batch(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images (N x 3072 uint8) and labels cycling over the 10 classes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), np.arange(n) % 10


def binary_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    return np.concatenate([labels.astype(np.uint8)[:, None], images], axis=1).tobytes()


def python_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    return pickle.dumps({b"batch_label": b"fake", b"labels": labels.tolist(), b"data": images}, protocol=2)


def write_fake(folder: Path, fmt: str, n: int = 20) -> tuple[dict[str, FileCheck], dict[str, np.ndarray]]:
    """Write a fake dataset folder; returns (checksum table, {file name: images}) for checks."""
    folder.mkdir(parents=True, exist_ok=True)
    names = BINARY_NAMES if fmt == "binary" else PYTHON_NAMES
    table, contents = {}, {}
    for index, name in enumerate(names):
        images, labels = fake_batch(n, seed=index)
        raw = binary_bytes(images, labels) if fmt == "binary" else python_bytes(images, labels)
        (folder / name).write_bytes(raw)
        table[name] = FileCheck(hashlib.md5(raw).hexdigest(), len(raw))
        contents[name] = images
    return table, contents


def make_archive(path: Path, members: dict[str, bytes]) -> FileCheck:
    """A .tar.gz holding the given files; returns its checksum entry."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    path.write_bytes(buffer.getvalue())
    return FileCheck(hashlib.md5(buffer.getvalue()).hexdigest())


def fake_binary_archive(path: Path, n: int = 20) -> FileCheck:
    members = {}
    for index, name in enumerate(BINARY_NAMES):
        members[f"cifar-10-batches-bin/{name}"] = binary_bytes(*fake_batch(n, seed=index))
    return make_archive(path, members)


def dead_pid() -> int:
    """The process id of a process that has ended."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def shipped_parts() -> tuple[dict, dict]:
    """The shipped robust weights' tensors and metadata, as a file's writer is given them (to write altered copies)."""
    from resnet_cifar.checkpoint import WRITTEN_KEYS, load_checkpoint
    from resnet_cifar.inference.loading import DEFAULT_WEIGHTS

    tensors, metadata = load_checkpoint(DEFAULT_WEIGHTS)
    return tensors, {k: v for k, v in metadata.items() if k not in WRITTEN_KEYS}
