"""Crash safety: signals, SIGKILL at random moments and mid-checkpoint, NaN losses, determinism."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import rest_of_output
from resnet_cifar.checkpoint import load_checkpoint
from resnet_cifar.config import load_config
from resnet_cifar.errors import TrainingError
from resnet_cifar.run_folder import TIMING_COLUMNS, read_metrics
from resnet_cifar.train.loop import Callback
from tiny import make_trainer, tiny_flags

TESTS = Path(__file__).resolve().parents[1]
TINY_FLAGS = tiny_flags(
    epochs=3, label_smoothing=0.0, deterministic=True, tta=0, progress="lines", checkpoint_every=1, test_at_end=True
)


def train_process(run_root: Path, cifar_dir: Path, *extra: str, crash_at: int | None = None) -> subprocess.Popen:
    entry = [str(TESTS / "crash_shim.py"), str(crash_at)] if crash_at else ["-m", "resnet_cifar"]
    command = [sys.executable, *entry, "train", *extra, "--data-dir", str(cifar_dir)]
    return subprocess.Popen(command, cwd=run_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def start_or_resume(run_root: Path, cifar_dir: Path, crash_at: int | None = None) -> subprocess.Popen:
    run = run_root / "outputs" / "kill"
    if (run / "last.safetensors").exists():
        return train_process(run_root, cifar_dir, "--resume", str(run), crash_at=crash_at)
    return train_process(run_root, cifar_dir, *TINY_FLAGS, "--name", "kill", "--overwrite", crash_at=crash_at)


def weights(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(run / "last.safetensors")
    return {k: v for k, v in tensors.items() if not k.startswith("rng.")}


def metrics_without_timing(run: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in read_metrics(run / "metrics.csv")]


@pytest.fixture(scope="module")
def uninterrupted(cifar_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("straight")
    started = time.monotonic()
    process = train_process(root, cifar_dir, *TINY_FLAGS, "--name", "kill")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return root / "outputs" / "kill", time.monotonic() - started, output


def test_sigkill_at_random_moments_and_mid_checkpoint_then_resume_is_bit_identical(cifar_dir, tmp_path, uninterrupted):
    reference, duration, reference_output = uninterrupted
    rng = random.Random(1234)
    kills, crashes = 0, 0
    # A crash inside the 4th atomic write of the process (a checkpoint half-written), then a kill at a random moment
    # of the resumed run (its start-up, training, or a write): every phase is hit.
    plan = [("crash", 4), ("kill", None)]
    for kind, crash_at in plan:
        process = start_or_resume(tmp_path, cifar_dir, crash_at=crash_at)
        if kind == "kill":
            time.sleep(rng.uniform(0.3, duration * 0.8))
            process.send_signal(signal.SIGKILL)
        process.communicate(timeout=300)
        if process.returncode == 0:
            break  # it finished before the kill
        assert process.returncode == -signal.SIGKILL
        kills += kind == "kill"
        crashes += kind == "crash"
        last = tmp_path / "outputs" / "kill" / "last.safetensors"
        if last.exists():
            load_checkpoint(last)  # whatever happened, the checkpoint on disk is whole and verifies
    assert crashes >= 1
    process = start_or_resume(tmp_path, cifar_dir)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output

    resumed = tmp_path / "outputs" / "kill"
    a, b = weights(reference), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "final weights differ from the uninterrupted run"
    assert metrics_without_timing(reference) == metrics_without_timing(resumed)
    assert output.strip().splitlines()[-1] == reference_output.strip().splitlines()[-1]  # same test accuracy


def test_sigterm_finishes_the_step_checkpoints_and_says_how_to_resume(cifar_dir, tmp_path):
    process = train_process(tmp_path, cifar_dir, *TINY_FLAGS, "--name", "term", "--epochs", "50")
    lines = []
    for line in process.stdout:  # wait until training is under way
        lines.append(line)
        if line.startswith("epoch"):
            break
    process.send_signal(signal.SIGTERM)
    output = "".join(lines) + rest_of_output(process, timeout=120)
    assert process.returncode == 128 + signal.SIGTERM
    assert "resume with: resnet-cifar train --resume outputs/term" in output
    _, meta = load_checkpoint(tmp_path / "outputs" / "term" / "last.safetensors")
    assert meta["step"] > 10  # the position at the signal (epoch 1 is 10 steps), not the last epoch boundary only


class PoisonWeights(Callback):
    """Sets one weight to NaN after `step` steps, as a numerical fault would."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, trainer):
        if trainer.position.step == self.step:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(cifar_dir, tmp_path):
    config = load_config(
        None,
        {
            "model": "fastnet",
            "model_options": {"widths": [16, 32, 64], "blocks": [1, 0, 1], "stem_width": 16},
            "train_size": 1000,
            "val_size": 500,
            "batch_size": 100,
            "epochs": 4,
            "precision": "fp32",
            "progress": "none",
            "plots": False,
            "test_at_end": False,
            "data_dir": str(cifar_dir),
        },
    )
    run = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"loss became nan at step 26 .*last good checkpoint .*last.safetensors"):
        make_trainer(config, run, callbacks=[PoisonWeights(25)]).fit()
    tensors, meta = load_checkpoint(run / "last.safetensors")
    assert meta["step"] == 20  # the end of epoch 2: the last checkpoint written before the fault
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if t.is_floating_point())


def test_same_config_and_seed_give_identical_metrics_and_weights(cifar_dir, tmp_path):
    flags = {"deterministic": True, "precision": "fp32", "device": "cpu"}
    config = load_config(
        None,
        {
            "model": "resnet20",
            "train_size": 500,
            "val_size": 500,
            "batch_size": 50,
            "epochs": 1,
            "progress": "none",
            "plots": False,
            "test_at_end": False,
            "data_dir": str(cifar_dir),
            **flags,
        },
    )
    for name in ("a", "b"):
        make_trainer(config, tmp_path / name).fit()
    assert metrics_without_timing(tmp_path / "a") == metrics_without_timing(tmp_path / "b")
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_parent_death_stops_training_with_a_checkpoint(cifar_dir, tmp_path):
    """`make train` killed with SIGKILL: the trainer gets SIGTERM (prctl PDEATHSIG) and checkpoints."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    inner = [
        sys.executable,
        "-m",
        "resnet_cifar",
        "train",
        *TINY_FLAGS,
        "--name",
        "orphan",
        "--epochs",
        "50",
        "--data-dir",
        str(cifar_dir),
    ]
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run(sys.argv[1:])", *inner],
        cwd=tmp_path,
    )
    run = tmp_path / "outputs" / "orphan"
    deadline = time.monotonic() + 120
    while not (run / "last.safetensors").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 60
    while trainer_pids("orphan") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not trainer_pids("orphan"), "the trainer ran on as an orphan"
    _, meta = load_checkpoint(run / "last.safetensors")
    assert meta["step"] > 0


def trainer_pids(name: str) -> list[int]:
    """PIDs of running `resnet_cifar train ... --name <name>` processes (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"resnet_cifar" in argv and b"train" in argv and name.encode() in argv:
            pids.append(int(entry.name))
    return pids


def test_atomic_writes_get_the_usual_file_permissions(tmp_path):
    import os

    from resnet_cifar.files import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "metrics.csv", b"epoch\n")
    finally:
        os.umask(old)
    assert (tmp_path / "metrics.csv").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
