"""torchrun on CPU with gloo: 2 processes train like 1 with the same global batch, and their checkpoints resume in a
single process.

Without batch norm the comparison is exact. Two processes each take half of the global batch; one process taking the
whole batch at once sums the per-image gradients in another order (oneDNN reduces the batch dimension in blocks whose
size depends on the ISA and the batch), which alone moved a first-layer bias by 2.7e-5 after 12 steps on an AVX2 CPU
(below 1e-5 on AVX-512, by luck). One process with `--accumulate 2` computes the two halves as the two ranks do and
adds their gradients, each weighted 1/2 (exact in floating point), so it must give the very same bits.

With batch norm they cannot agree that closely: the gradients
of a BN network are ill-conditioned enough that float32 alone moves ResNet-20's first-layer gradient by ~2e-3
(relative) from its float64 value, and summing the statistics in two halves rounds differently. The BN test
therefore compares a few steps with a tolerance well inside the gap to what unsynchronised (per-rank) statistics
give, and checks that gap is really there. The exact float64 check of the synchronised statistics and their
gradients is in test_sync_batchnorm_matches_full_batch_batchnorm_in_float64.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from commands import run_cli
from repo_scripts import load_script
from resnet_cifar.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")

BASE = [
    "--model",
    "fastnet",
    "--train-size",
    "600",
    "--val-size",
    "100",
    "--batch-size",
    "100",
    "--epochs",
    "2",
    "--lr",
    "0.2",
    "--precision",
    "fp32",
    "--device",
    "cpu",
    "--threads",
    "1",
    "--progress",
    "lines",
    "--no-plots",
    "--no-test-at-end",
    "--deterministic",
]
# ResNet-20 (no max-pool whose ties could route gradients differently), 3 steps at a gentle learning rate
BN_NET = ["--model", "resnet20", "--lr", "0.02", "--epochs", "1", "--train-size", "300", "--no-channels-last"]
NO_BN_NET = ["--model-options", "{widths: [16, 32, 64], blocks: [1, 0, 1], stem_width: 16, norm: none}"]
NO_BN_NET += ["--epochs", "3"]  # three, so that one run can move from 1 process to 2 and back


def torchrun(cwd: Path, processes: int, *args: str) -> str:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [sys.executable, *launcher, "-m", "resnet_cifar", "train", *args]
    # A short timeout: torch.distributed's shutdown can, rarely, leave a gloo worker waiting (pytorch#75097)
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def model_weights(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(run / "last.safetensors")
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a if a[k].is_floating_point())


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"not bit-identical: {different[:5]} (largest difference {largest_difference(a, b):.3g})"


def train_here(cwd: Path, *args: str) -> str:
    """One process's run in this process (no interpreter to start): the reference the torchrun runs must match. The
    process-wide settings it changes (threads, deterministic algorithms) are put back."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        result = run_cli("train", *args, cwd=cwd)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def halves_run(cifar_dir, tmp_path_factory):
    """One process taking each global batch in two micro-batches, as two ranks do: the reference of the exact tests."""
    root = tmp_path_factory.mktemp("halves")
    train_here(root, *BASE, *NO_BN_NET, "--data-dir", str(cifar_dir), "--name", "halves", "--accumulate", "2")
    return model_weights(root / "outputs" / "halves")


@pytest.mark.slow
def test_sync_bn_two_processes_match_one(cifar_dir, tmp_path):
    data = ["--data-dir", str(cifar_dir)]
    train_here(tmp_path, *BASE, *BN_NET, *data, "--name", "one")
    torchrun(tmp_path, 2, *BASE, *BN_NET, *data, "--sync-bn", "--name", "synced")
    synced = largest_difference(
        model_weights(tmp_path / "outputs" / "one"), model_weights(tmp_path / "outputs" / "synced")
    )
    # measured on an AVX2 CPU: synced 1.4e-4 (float32 rounding); the same two processes with per-rank statistics
    # (no --sync-bn) 3.6e-2, so a --sync-bn that did nothing would fail here
    assert synced <= 1e-3, synced


def _sync_bn_worker(rank: int, world_size: int, port: int, images, queue) -> None:
    import os

    import torch.distributed as dist

    from resnet_cifar.train.distributed import convert_sync_batchnorm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        net = convert_sync_batchnorm(_bn_net(), "cpu")
        half = images.shape[0] // world_size
        mine = images[rank * half : (rank + 1) * half]
        net(mine).square().sum().backward()  # a loss that is a sum over samples: the ranks' gradients add up
        grads = [p.grad.clone() for p in net.parameters()]
        for g in grads:
            dist.all_reduce(g)
        # as numpy arrays: torch tensors would be shared through file descriptors that vanish when this process ends
        queue.put((rank, [g.numpy() for g in grads], [b.numpy().copy() for b in net.buffers()]))
    finally:
        dist.destroy_process_group()


def _bn_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
    )
    return net.double()


def test_sync_batchnorm_matches_full_batch_batchnorm_in_float64():
    import socket

    import torch.multiprocessing as mp

    images = torch.randn(8, 3, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3 + 1
    reference = _bn_net()
    reference(images).square().sum().backward()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_sync_bn_worker, args=(r, 2, port, images, queue)) for r in range(2)]
    for w in workers:
        w.start()
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    for _, grads, buffers in results:
        for g, p in zip(grads, reference.parameters(), strict=True):
            torch.testing.assert_close(torch.from_numpy(g), p.grad, rtol=1e-10, atol=1e-10)
        for b, r in zip(buffers, reference.buffers(), strict=True):  # running mean/var/count
            torch.testing.assert_close(torch.from_numpy(b), r, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_two_processes_match_one_bit_for_bit_and_resume_with_another_number_of_processes(
    cifar_dir, tmp_path, halves_run
):
    """Epoch 1 with one process, epochs 2 and 3 with two; a single process takes the batch in halves (as the two
    ranks do), so the result must be the uninterrupted one-process run's, bit for bit."""
    data = ["--data-dir", str(cifar_dir)]
    run = tmp_path / "outputs" / "moved"
    first = [*BASE, *NO_BN_NET, *data, "--accumulate", "2", "--name", "moved", "--stop-after-epochs", "1"]
    assert "stopped after 1 epoch as asked" in train_here(tmp_path, *first, "--test-at-end")
    _, meta = load_checkpoint(run / "last.safetensors")
    assert meta["world_size"] == 1 and meta["step"] == 6
    resumed = torchrun(tmp_path, 2, "--resume", "outputs/moved", "--accumulate", "1", *data)
    assert "x2 processes" in resumed and resumed.count("epoch   2/3") == 1  # one process does all the logging
    assert_identical(model_weights(run), halves_run)
    # rank 0 tests alone while rank 1 waits: it takes rank 1's thread too (recorded with the results)
    results = json.loads((run / "results.json").read_text())
    assert results["timings"]["test_threads"] == min(2, os.cpu_count()) and results["runtime"]["threads"] == 1
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["moved"]  # one set of outputs per run


def test_the_benchmarks_launch_n_processes_through_torchrun_with_the_threads_shared_out(monkeypatch):
    """repeat_runs.py and sweep.py --processes N: torchrun with N workers of cores / N threads, a --threads given
    among the arguments placed after (argparse keeps the last)."""
    repeat_runs = load_script("benchmarks/repeat_runs.py")
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert repeat_runs.train_command(1, "--seed", "1") == [sys.executable, "-m", "resnet_cifar", "train", "--seed", "1"]
    command = repeat_runs.train_command(2, "--seed", "1", "--threads", "1")
    assert command[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert command[6:] == ["-m", "resnet_cifar", "train", "--threads", "2", "--seed", "1", "--threads", "1"]
