"""torchrun on CPU with gloo: 2 processes train exactly like 1 with the same global batch, and their checkpoints
resume in a single process."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from resnet_cifar.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")

BASE = [
    "--model",
    "fastnet",
    "--train-size",
    "600",
    "--val-size",
    "500",
    "--batch-size",
    "100",
    "--epochs",
    "2",
    "--lr",
    "0.2",
    "--no-bf16",
    "--threads",
    "1",
    "--progress",
    "lines",
    "--no-plots",
    "--no-test-at-end",
    "--deterministic",
]
BN_NET = ["--model-options", "{widths: [16, 32, 64], blocks: [1, 0, 1], stem_width: 16}", "--sync-bn"]
NO_BN_NET = ["--model-options", "{widths: [16, 32, 64], blocks: [1, 0, 1], stem_width: 16, norm: none}"]


def train(cwd: Path, processes: int, *args: str) -> str:
    launcher = (
        ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else []
    )
    command = [sys.executable, *launcher, "-m", "resnet_cifar", "train", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def model_weights(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(run / "last.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def assert_close(a: dict, b: dict, tolerance: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if a[name].is_floating_point():
            difference = (a[name] - b[name]).abs().max().item()
            assert difference <= tolerance, f"{name}: {difference}"


@pytest.mark.slow
@pytest.mark.parametrize("net", [BN_NET, NO_BN_NET], ids=["sync-bn", "no-bn"])
def test_two_processes_match_one_with_the_same_global_batch(cifar_dir, tmp_path, net):
    data = ["--data-dir", str(cifar_dir)]
    single = train(tmp_path, 1, *BASE, *net, *data, "--name", "one")
    double = train(tmp_path, 2, *BASE, *net, *data, "--name", "two")
    assert "x2 processes" in double and "x2 processes" not in single
    assert double.count("epoch   1/2") == 1  # one process does all the logging
    run_folders = sorted(p.name for p in (tmp_path / "outputs").iterdir())
    assert run_folders == ["one", "two"]  # one set of outputs per run
    assert_close(model_weights(tmp_path / "outputs" / "one"), model_weights(tmp_path / "outputs" / "two"))


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_in_one_process(cifar_dir, tmp_path):
    data = ["--data-dir", str(cifar_dir)]
    train(tmp_path, 1, *BASE, *BN_NET, *data, "--name", "straight")
    paused = train(tmp_path, 2, *BASE, *BN_NET, *data, "--name", "moved", "--stop-after-epochs", "1")
    assert "stopped after 1 epochs" in paused
    _, meta = load_checkpoint(tmp_path / "outputs" / "moved" / "last.safetensors")
    assert meta["world_size"] == 2 and meta["step"] == 6
    train(tmp_path, 1, "--resume", "outputs/moved", "--stop-after-epochs", "null", *data)
    assert_close(model_weights(tmp_path / "outputs" / "straight"), model_weights(tmp_path / "outputs" / "moved"))
