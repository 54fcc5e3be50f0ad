"""Device and precision routing (resnet_cifar.runtime), the epoch plan that feeds a GPU, and off-terminal progress."""

import functools
import os
import subprocess
import sys

import pytest
import torch

from resnet_cifar import runtime
from resnet_cifar.data.augment import Augmentation, normalize
from resnet_cifar.errors import ConfigError
from resnet_cifar.train.batches import BatchStream
from resnet_cifar.train.progress import RunProgress, format_duration

CPU = torch.device("cpu")


def test_runtime_describes_itself_for_the_run_header(machine):
    machine("avx2")
    chosen = runtime.choose_runtime("cpu", "auto")
    assert chosen.describe() == f"cpu (AVX2, no native bf16 → fp32), {torch.get_num_threads()} threads"
    assert runtime.Runtime(CPU, "fp32", "AVX2, fp32 as asked", 1).describe() == "cpu (AVX2, fp32 as asked), 1 thread"
    saved = chosen.as_dict()
    assert saved["precision"] == "fp32" and "AVX2" in saved["machine"]


def test_cuda_requested_without_cuda_is_one_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        runtime.resolve_device("cuda")
    assert runtime.resolve_device("auto") == CPU


def test_the_avx2_kernels_of_an_avx512_machine_are_seen_as_avx2():
    """ATEN_CPU_CAPABILITY=avx2 (with ONEDNN_MAX_CPU_ISA=AVX2) gives an AVX-512 machine an AVX2 CPU's kernels; the
    choice must then be the AVX2 one, fp32, on either kind of machine."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    code = "from resnet_cifar import runtime; print(runtime.choose_runtime('cpu', 'auto').reason)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "AVX2, no native bf16 → fp32"


def test_the_real_probe_measures_a_positive_ratio_once_from_no_grad():
    with torch.no_grad():
        first = runtime.bf16_speedup(CPU)
    assert first > 0 and runtime.bf16_speedup(CPU) == first  # cached per process


# --- the epoch plan: all random draws up front, so a device-resident dataset needs no copy per step ----------------


def _stream(images, rank=0, world_size=1):
    labels = torch.arange(len(images)) % 10
    return BatchStream(
        images, labels, Augmentation(4, "reflect", True, 8), 20, seed=3, rank=rank, world_size=world_size
    )


def test_a_plan_started_mid_epoch_gives_the_same_batches():
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    stream = _stream(images)
    whole, resumed = stream.plan(epoch=2), stream.plan(epoch=2, first_step=3)
    for step in range(3, stream.steps_per_epoch):
        a, la = stream.batch(whole, step)
        b, lb = stream.batch(resumed, step - 3)
        assert torch.equal(a, b) and torch.equal(la, lb)


def test_ranks_take_their_slices_of_the_global_batch():
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    one = _stream(images)
    halves = [_stream(images, rank, 2) for rank in range(2)]
    for step in range(one.steps_per_epoch):
        full, labels = one.batch(one.plan(1), step)
        parts = [s.batch(s.plan(1), step) for s in halves]
        assert torch.equal(torch.cat([p[0] for p in parts]), full)
        assert torch.equal(torch.cat([p[1] for p in parts]), labels)


def test_alternating_flips_mirror_each_image_every_other_epoch_and_resume_mid_epoch():
    images = torch.randint(0, 256, (100, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(100) % 10
    stream = BatchStream(images, labels, Augmentation(0, "reflect", True), 20, seed=3, alternate_flips=True)
    flipped = functools.partial(_flips_by_image, stream)
    first = flipped(0)
    assert 30 < int(first.sum()) < 70  # a coin per image in the first epoch
    assert torch.equal(flipped(1), ~first) and torch.equal(flipped(2), first) and torch.equal(flipped(3), ~first)
    # the batches really carry those flips, and a plan started mid-epoch (a resume) continues the alternation
    whole, resumed = stream.plan(1), stream.plan(1, first_step=2)
    for step in range(2, stream.steps_per_epoch):
        batch, _ = stream.batch(resumed, step - 2)
        assert torch.equal(batch, stream.batch(whole, step)[0])
        chosen = whole.order[step * 20 : (step + 1) * 20]
        mirrored = normalize(images[chosen].flip(3))  # epoch 1 mirrors exactly the images epoch 0 left alone
        assert torch.equal(batch[~first[chosen]], mirrored[~first[chosen]])
    random_flips = BatchStream(images, labels, Augmentation(0, "reflect", True), 20, seed=3)
    assert not torch.equal(_flips_by_image(random_flips, 1), ~_flips_by_image(random_flips, 0))


def _flips_by_image(stream: BatchStream, epoch: int) -> torch.Tensor:
    """Per image index: is it flipped in this epoch?"""
    plan = stream.plan(epoch)
    out = torch.zeros(len(stream.labels), dtype=torch.bool)
    out[plan.order] = plan.params.flip
    return out


# --- progress off a terminal ----------------------------------------------------------------------------------------


def test_progress_lines_come_after_the_first_steps_then_every_30_seconds(capsys):
    now = [0.0]
    progress = RunProgress("lines", total_steps=100, epochs=2, clock=lambda: now[0])
    progress.start_epoch(1, 50)
    shown_at = []
    for step in range(1, 51):
        now[0] += 4.0  # a slow machine: 4 s per step
        progress.update(step, lambda: (2.0, 0.25, 64.0))
        if capsys.readouterr().out:
            shown_at.append(step)
    assert shown_at == [3, 11, 19, 27, 35, 43]  # step 3 (12 s), then whenever 30 s have passed since the last line
    line = progress.line(50, (1.5, 0.5, 64.0), now=200.0)  # 4 s per step so far, 50 steps to go
    assert line.strip() == "step 50/100 (epoch 1/2)  loss 1.5000  acc 0.5000  64 img/s  ETA 3m20s for training"


def test_the_eta_leaves_out_the_first_step_which_pays_one_off_costs(capsys):
    """On a GPU the first step selects kernels (cudnn.benchmark): an H100 run once showed `ETA 24m07s` for 25 s."""
    now = [0.0]
    progress = RunProgress("lines", total_steps=700, epochs=4, clock=lambda: now[0])
    progress.start_epoch(1, 175)
    for step, seconds in enumerate((3.0, 0.01, 0.01), start=1):
        now[0] += seconds
        progress.update(step, lambda: (2.0, 0.1, 30000.0))
    assert capsys.readouterr().out.strip().endswith("ETA 7s for training")  # 697 steps of 0.01 s, not of 1 s


def test_the_eta_follows_the_last_ten_minutes_not_a_slow_stretch_long_past(capsys):
    """A first epoch slowed by another process once made a 2-hour run's ETA say 3h19m when 1.8 h were left."""
    now = [0.0]
    progress = RunProgress("lines", total_steps=3000, epochs=3, clock=lambda: now[0])
    progress.start_epoch(1, 1000)
    for step in range(1, 1101):
        now[0] += 20.0 if step <= 100 else 1.0  # 100 steps at 20 s, then the machine is free again: 1 s per step
        progress.update(step, lambda: (1.0, 0.5, 128.0))
    shown = capsys.readouterr().out.strip().splitlines()
    assert len(shown) > 20  # a line at least every 30 s throughout
    # 1,900 steps to go at 1 s each; the whole run's mean (2.7 s per step) would say 1h26m
    assert progress.line(1100, (1.0, 0.5, 128.0), now[0]).endswith("ETA 31m40s for training")


def test_the_probe_times_only_warmed_up_calls_and_compares_the_fastest(monkeypatch):
    """The first call of each precision creates its kernels and is never timed, however long it takes on a busy
    machine; of the timed calls, interleaved, the fastest of each precision is compared."""
    clock = iter([0.2, 0.001, 0.3, 0.0015, 0.004, 0.0006, 0.002, 0.05, 0.001, 0.9])  # fp32, bf16, fp32, ...
    monkeypatch.setattr(runtime, "PROBE_TIMER", lambda run, bf16: run() or next(clock))
    runtime.bf16_speedup.cache_clear()
    try:
        assert runtime.bf16_speedup(CPU) == pytest.approx(0.001 / 0.0006)
    finally:
        runtime.bf16_speedup.cache_clear()


def test_durations_read_naturally():
    assert [format_duration(s) for s in (5, 75, 3725)] == ["5s", "1m15s", "1h02m"]


def test_the_config_accepts_exactly_the_precisions_the_runtime_knows():
    from resnet_cifar.choices import PRECISIONS
    from resnet_cifar.config import load_config

    for value in PRECISIONS:
        assert load_config(None, {"precision": value, "device": "cpu"}).precision == value
        assert runtime.check_precision(value) == value
    for wrong in ("maybe", True, "BF16"):
        with pytest.raises(ConfigError, match="precision: "):
            load_config(None, {"precision": wrong})
        with pytest.raises(ConfigError, match="precision: must be auto, bf16 or fp32"):
            runtime.check_precision(wrong)
