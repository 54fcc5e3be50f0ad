"""Where and in what precision to compute, chosen once from the hardware.

bf16 autocast is ~2.5x faster than fp32 on CPUs with native bf16 (AVX512_BF16, AMX) and ~400x *slower* on CPUs
without it (AVX2 only: oneDNN emulates it). `choose_runtime` therefore decides from what the machine has, and, where
the hardware claims bf16, from a short measurement (a convolution in both precisions, once per process): the flags
can be right while the kernels are not (e.g. `ONEDNN_MAX_CPU_ISA=AVX2` on an AVX-512 CPU). Every run header,
checkpoint and results file records the choice and why it was made.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from resnet_cifar.errors import ConfigError

BF16_CHOICES = (True, False, "auto")  # auto: chosen here from the hardware
BF16_MIN_SPEEDUP = 1.1  # bf16 is chosen automatically only when the probe measures it at least this much faster


@dataclass(frozen=True)
class Runtime:
    """The resolved device and precision of a run (or an evaluation), with the reason for the precision."""

    device: torch.device
    bf16: bool
    reason: str  # e.g. "AVX2, no native bf16 → fp32"
    threads: int

    @property
    def precision(self) -> str:
        return "bf16" if self.bf16 else "fp32"

    def describe(self) -> str:
        """One line for a run header, e.g. `cpu (AVX2, no native bf16 → fp32), 2 threads`."""
        return f"{self.device} ({self.reason}), {self.threads} thread{'' if self.threads == 1 else 's'}"

    def as_dict(self) -> dict:
        return {
            "device": str(self.device),
            "precision": self.precision,
            "reason": self.reason,
            "threads": self.threads,
            "machine": machine_description(self.device),
        }


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` → CUDA when available, else CPU; an explicit CUDA device must exist."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: must be cpu, cuda, cuda:N or auto; got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name} requested but CUDA is not available")
    return device


# --- what the machine is ---------------------------------------------------------------------------------------------


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty elsewhere than Linux)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


@functools.cache
def cpu_name() -> str:
    """The CPU model, with family/model numbers where the name alone is vague (virtual machines say "AMD EPYC")."""
    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']} model {info['model']})"
    return name


@functools.cache
def cpu_isa() -> str:
    """The vector ISA PyTorch's CPU kernels use: AVX2, AVX512, AVX512_BF16 or AMX (honours ATEN_CPU_CAPABILITY)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX512":
        return capability
    flags = set(_cpuinfo().get("flags", "").split())
    if "amx_bf16" in flags:
        return "AMX"
    return "AVX512_BF16" if "avx512_bf16" in flags else "AVX512"


def cpu_has_native_bf16() -> bool:
    """What the hardware and PyTorch's kernels claim; `bf16_speedup` measures whether it holds."""
    return cpu_isa() in ("AVX512_BF16", "AMX") and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else ""


def machine_description(device: torch.device | None = None) -> str:
    """e.g. `AMD EPYC (family 25 model 1), AVX2, 2 cores, 2 torch threads, torch 2.13.0+cpu` (+ the GPU in use)."""
    text = (
        f"{cpu_name()}, {cpu_isa()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}"
    )
    if device is None and torch.cuda.is_available():
        device = torch.device("cuda")
    if device is not None and device.type == "cuda":
        text += f", GPU {gpu_name(device)}"
    return text


# --- the precision probe ---------------------------------------------------------------------------------------------


def _time_conv(device: torch.device, bf16: bool, repeats: int = 3) -> float:
    """Best-of-`repeats` seconds of a 3x3 convolution forward + backward, the bulk of a ResNet step."""
    big = device.type == "cuda"
    channels, size, batch = (256, 32, 64) if big else (64, 16, 16)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, size, size, generator=generator).to(device)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last)

    def run() -> float:
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            conv(x).float().sum().backward()
        if big:
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    # On a CPU an emulated precision is slow enough to tell from the first call; on CUDA the first call also pays
    # for starting cuDNN (measured 0.9 s on an H100, which once made bf16 look 862x faster), so it never counts.
    return best_seconds(run, repeats, budget=0.5, first_counts=not big)


def best_seconds(run: Callable[[], float], repeats: int, budget: float, first_counts: bool) -> float:
    """The fastest of up to `repeats` timed calls of `run` after one warm-up call (one-off kernel selection), stopping
    once the timed calls took `budget` seconds; `first_counts`: a warm-up call slower than the budget is the answer."""
    warm_up = run()
    if first_counts and warm_up > budget:
        return warm_up
    best, spent = float("inf"), 0.0
    for _ in range(repeats):
        seconds = run()
        best, spent = min(best, seconds), spent + seconds
        if spent > budget:
            break
    return best


@functools.cache
def bf16_speedup(device: torch.device) -> float:
    """fp32 time / bf16 time of a probe convolution on `device` (> 1: bf16 is faster). Measured once per process."""
    with torch.random.fork_rng(devices=[]):  # the probe must not move any seeded random stream
        return _time_conv(device, bf16=False) / _time_conv(device, bf16=True)


# --- the choice ------------------------------------------------------------------------------------------------------


def choose_precision(device: torch.device, requested: bool | str = "auto") -> tuple[bool, str]:
    """(use bf16, why) for `device`; `requested` is True, False or "auto"."""
    if requested not in BF16_CHOICES:
        raise ConfigError(f"bf16: must be true, false or auto; got {requested!r}")
    if device.type == "cuda":
        return _choose_cuda(device, requested)
    if device.type != "cpu":
        return bool(requested is True), f"{device.type}, bf16 {'as asked' if requested is True else 'off'}"
    isa = cpu_isa()
    if requested is False:
        return False, f"{isa}, fp32 as asked"
    if not cpu_has_native_bf16():
        if requested == "auto":
            return False, f"{isa}, no native bf16 → fp32"
        speedup = bf16_speedup(device)
        _warn_once(
            f"bf16 on a CPU without native bf16 ({isa}): a probe convolution ran {1 / speedup:.0f}x slower than in "
            "fp32. Use --bf16 auto (or --no-bf16) for speed."
        )
        return True, f"{isa}, bf16 as asked (emulated: measured {1 / speedup:.0f}x slower than fp32)"
    if requested is True:
        return True, f"{isa}, bf16 as asked"
    return _by_probe(device, isa)


def _by_probe(device: torch.device, label: str) -> tuple[bool, str]:
    """bf16 where the hardware supports it natively and the probe measures it faster."""
    speedup = bf16_speedup(device)
    if speedup >= BF16_MIN_SPEEDUP:
        return True, f"{label}, bf16 measured {speedup:.1f}x faster → bf16"
    return False, f"{label}, bf16 measured only {speedup:.2f}x the speed of fp32 → fp32"


@functools.cache
def _warn_once(message: str) -> None:
    print(f"resnet-cifar: warning: {message}", file=sys.stderr, flush=True)


def _choose_cuda(device: torch.device, requested: bool | str) -> tuple[bool, str]:
    name = gpu_name(device)
    if requested is False:
        return False, f"{name}, fp32 as asked"
    if not torch.cuda.is_bf16_supported():
        if requested is True:
            raise ConfigError(f"bf16: {name} does not support bfloat16")
        return False, f"{name}, no bf16 → fp32"
    if requested is True:
        return True, f"{name}, bf16 as asked"
    return _by_probe(device, name)


def choose_runtime(device: str | torch.device = "auto", bf16: bool | str = "auto", threads: int = 0) -> Runtime:
    """Resolve the device, set the thread count (0: leave PyTorch's default, one per core) and pick the precision."""
    if threads:
        torch.set_num_threads(threads)
    resolved = resolve_device(device)
    use_bf16, reason = choose_precision(resolved, bf16)
    return Runtime(resolved, use_bf16, reason, torch.get_num_threads())


def enable_determinism(device: torch.device) -> None:
    """Deterministic algorithms only (bit-identical reruns). cuBLAS needs a fixed workspace for that, set before its
    first use (https://docs.nvidia.com/cuda/cublas/#results-reproducibility)."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


def let_cudnn_choose_kernels(device: torch.device) -> None:
    """On CUDA, time cuDNN's convolution algorithms once per shape and keep the fastest (our shapes are fixed, so the
    one-off search pays back within the first epoch). Not under `deterministic`: the fastest kernel may vary."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
