"""`resnet-cifar data verify`: check every file of the dataset against its published checksum and count classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from resnet_cifar.data.checksums import BINARY_FILES, PYTHON_FILES, md5_file
from resnet_cifar.data.cifar10 import CLASSES, SPLIT_FILES, load_split
from resnet_cifar.data.locate import Dataset


@dataclass(frozen=True)
class FileStatus:
    name: str
    ok: bool
    detail: str


def check_files(dataset: Dataset) -> list[FileStatus]:
    table = BINARY_FILES if dataset.format == "binary" else PYTHON_FILES
    statuses = []
    for name in SPLIT_FILES[dataset.format]["train"] + SPLIT_FILES[dataset.format]["test"]:
        path: Path = dataset.folder / name
        expected = table[name]
        if not path.is_file():
            statuses.append(FileStatus(name, False, f"MISSING (expected MD5 {expected.md5})"))
            continue
        size = path.stat().st_size
        if expected.size is not None and size != expected.size:
            statuses.append(FileStatus(name, False, f"WRONG SIZE {size:,} bytes (expected {expected.size:,})"))
            continue
        actual = md5_file(path)
        if actual == expected.md5:
            statuses.append(FileStatus(name, True, f"OK  md5 {actual}  {size:,} bytes"))
        else:
            statuses.append(FileStatus(name, False, f"CORRUPTED md5 {actual} (expected {expected.md5})"))
    return statuses


def verify_report(dataset: Dataset) -> tuple[bool, str]:
    """(all files good, a printable report with per-class counts when the files are good)."""
    lines = [f"dataset: {dataset.folder} ({dataset.format} version)"]
    statuses = check_files(dataset)
    lines += [f"  {s.name:<18} {s.detail}" for s in statuses]
    ok = all(s.ok for s in statuses)
    if ok:
        for split in ("train", "test"):
            labels = load_split(dataset.folder, split, fmt=dataset.format).labels
            counts = torch.bincount(labels, minlength=len(CLASSES)).tolist()
            lines.append(f"{split}: {len(labels):,} images")
            lines += [f"  {cls:<11}{count:>6,}" for cls, count in zip(CLASSES, counts, strict=True)]
    lines.append("all files verified" if ok else "verification FAILED")
    return ok, "\n".join(lines)
