"""Hostile inputs, fuzzed: whatever bytes or text arrive, the result is either valid or a project exception with a
clear message: never another exception, a hang, code execution, or a write outside the target folder."""

import contextlib
import hashlib
import io
import pickle
import tarfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import fake_batch, python_bytes
from resnet_cifar.checkpoint import load_checkpoint, save_checkpoint
from resnet_cifar.config import load_config
from resnet_cifar.data.checksums import BINARY_RECORD_BYTES, FileCheck
from resnet_cifar.data.cifar10 import load_split, parse_binary, parse_python
from resnet_cifar.data.locate import safe_extract
from resnet_cifar.errors import CheckpointError, ConfigError, DataError

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --- dataset files -------------------------------------------------------------------------------------------------


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


# --- archives ------------------------------------------------------------------------------------------------------


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


# --- checkpoints ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "last.safetensors"
    save_checkpoint(path, {"model.w": torch.arange(24.0).view(4, 6), "model.n": torch.tensor(3)}, {"step": 7})
    return path.read_bytes()


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes_as_checkpoint(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("fuzzckpt") / "last.safetensors"
    path.write_bytes(raw)
    try:
        load_checkpoint(path)
    except CheckpointError as error:
        assert "last.safetensors" in str(error)


@FUZZ
@given(st.data())
def test_mutated_or_truncated_checkpoints_are_detected(tmp_path_factory, good_checkpoint, data):
    raw = bytearray(good_checkpoint)
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    else:
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] ^= data.draw(st.integers(1, 255))
    path = tmp_path_factory.mktemp("mutckpt") / "last.safetensors"
    path.write_bytes(bytes(raw))
    try:
        tensors, _meta = load_checkpoint(path)
    except CheckpointError as error:
        assert "last.safetensors" in str(error)
        return
    # A change that still loads can only be one JSON/header byte that keeps everything valid and equal.
    assert torch.equal(tensors["model.w"], torch.arange(24.0).view(4, 6))


# --- configs -------------------------------------------------------------------------------------------------------


YAML_TEXT = st.one_of(
    st.text(max_size=300),
    st.dictionaries(
        st.sampled_from(
            [
                "lr",
                "epochs",
                "model",
                "batch_size",
                "train_size",
                "milestones",
                "tta",
                "lrr",
                "base",
                "model_options",
                "schedule",
                "val_size",
                "ema",
                "name",
            ]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(10**6), 10**6),
            st.floats(allow_nan=True),
            st.text(max_size=10),
            st.lists(st.integers(-5, 5), max_size=3),
            st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
        ),
        max_size=5,
    ).map(lambda d: "\n".join(f"{k}: {v!r}" for k, v in d.items())),
)


@FUZZ
@given(YAML_TEXT)
def test_random_yaml_configs(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzzcfg") / "config.yaml"
    path.write_text(text)
    try:
        config = load_config(path)
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    assert config.batch_size > 0 and config.lr > 0


def test_binary_garbage_as_config(tmp_path):
    (tmp_path / "config.yaml").write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError):
        load_config(tmp_path / "config.yaml")


def test_pickle_is_never_used_for_checkpoints(tmp_path, good_checkpoint):
    assert b"\x80\x02" not in good_checkpoint[:16]
    with pytest.raises(CheckpointError):
        path = tmp_path / "last.safetensors"
        path.write_bytes(pickle.dumps({"model.w": torch.zeros(1)}))
        load_checkpoint(path)


def test_a_huge_memo_index_is_refused_before_anything_is_allocated():
    """b'Nr\\x9c\\xc6\\\\F' (None, then LONG_BINPUT 1,180,485,276): the unpickler would size its memo to that index,
    ~19 GB, before failing; the check refuses it first (this example took 80 s of page faults before)."""
    started = time.perf_counter()
    with pytest.raises(DataError, match="memo index 1180485276"):
        parse_python(b"Nr\x9c\xc6\\F", "data_batch_1")
    assert time.perf_counter() - started < 1.0
