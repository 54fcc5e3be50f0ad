"""Random and crafted dataset files and archives: refused with a DataError, never run, never escaping the folder."""

import contextlib
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import fake_batch, python_bytes
from resnet_cifar.data.checksums import BINARY_RECORD_BYTES, FileCheck
from resnet_cifar.data.cifar10 import load_split, parse_binary, parse_python
from resnet_cifar.data.locate import safe_extract
from resnet_cifar.errors import DataError

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@FUZZ
@given(st.binary(max_size=4 * BINARY_RECORD_BYTES))
def test_binary_batches_from_random_bytes(raw):
    try:
        split = parse_binary(raw, "data_batch_1.bin")
    except DataError as error:
        assert "data_batch_1.bin" in str(error)
        return
    assert split.images.shape == (len(raw) // BINARY_RECORD_BYTES, 3, 32, 32)
    assert len(split.labels) == 0 or int(split.labels.max()) <= 9


@FUZZ
@given(st.binary(max_size=2000))
def test_python_batches_from_random_bytes(raw):
    with pytest.raises(DataError, match="data_batch_1"):
        parse_python(raw, "data_batch_1")


@FUZZ
@given(st.integers(0, 30_000), st.integers(0, 255))
def test_python_batches_mutated(position, value):
    raw = bytearray(python_bytes(*fake_batch(4, seed=0)))
    raw[position % len(raw)] = value
    try:
        split = parse_python(bytes(raw), "data_batch_1")
    except DataError:
        return
    assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 32, 32)


def test_pickle_globals_are_refused_not_run():
    for target in (("os", "system"), ("builtins", "eval"), ("subprocess", "Popen")):
        payload = b"\x80\x02c" + f"{target[0]}\n{target[1]}\n".encode() + b"q\x00."
        with pytest.raises(DataError, match="refusing to load"):
            parse_python(payload, "data_batch_1")


@FUZZ
@given(st.binary(max_size=5000), st.sampled_from(["binary", "python"]))
def test_dataset_folder_with_random_files(tmp_path_factory, raw, fmt):
    folder = tmp_path_factory.mktemp("fuzzdata")
    name = "test_batch.bin" if fmt == "binary" else "test_batch"
    (folder / name).write_bytes(raw)
    table = {name: FileCheck(hashlib.md5(raw).hexdigest(), len(raw))}
    try:
        load_split(folder, "test", checksums=table)
    except DataError as error:
        assert name in str(error)
    with pytest.raises(DataError, match=name):  # and a wrong checksum is always caught first
        load_split(folder, "test", checksums={name: FileCheck("0" * 32)})


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_as_archive(tmp_path_factory, raw):
    root = tmp_path_factory.mktemp("fuzzarchive")
    (root / "x.tar.gz").write_bytes(raw)
    with contextlib.suppress(DataError):
        safe_extract(root / "x.tar.gz", root / "target")
    assert _tree(root) - {"x.tar.gz"} <= {"target"} | {f"target/{p}" for p in _tree(root / "target")}


NAMES = st.lists(
    st.one_of(
        st.sampled_from(["..", ".", "/", "/etc", "a", "b", "..."]),
        st.text(alphabet="ab./\\:", min_size=1, max_size=6),
    ),
    min_size=1,
    max_size=4,
).map("/".join)


@FUZZ
@given(
    st.lists(st.tuples(NAMES, st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"])), min_size=1, max_size=4)
)
def test_crafted_tar_members_never_escape(tmp_path_factory, members):
    root = tmp_path_factory.mktemp("fuzztar")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = 3
                tar.addfile(info, io.BytesIO(b"abc"))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[kind]
            info.linkname = "../../outside"
            tar.addfile(info)
    (root / "evil.tar").write_bytes(buffer.getvalue())
    target = root / "sub" / "target"
    with contextlib.suppress(DataError):
        safe_extract(root / "evil.tar", target)
    outside = {p for p in _tree(root) if not p.startswith("sub/target") and p not in ("evil.tar", "sub")}
    assert outside == set(), f"written outside the target: {outside}"
    for path in target.rglob("*") if target.exists() else []:
        assert not path.is_symlink()
        assert path.resolve().is_relative_to(target.resolve())
