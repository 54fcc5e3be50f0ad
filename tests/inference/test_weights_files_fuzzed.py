"""Random, mutated and truncated checkpoints are detected; pickle is never used."""

import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnet_cifar.checkpoint import load_checkpoint, save_checkpoint
from resnet_cifar.errors import CheckpointError

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


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


def test_pickle_is_never_used_for_checkpoints(tmp_path, good_checkpoint):
    assert b"\x80\x02" not in good_checkpoint[:16]
    with pytest.raises(CheckpointError):
        path = tmp_path / "last.safetensors"
        path.write_bytes(pickle.dumps({"model.w": torch.zeros(1)}))
        load_checkpoint(path)
