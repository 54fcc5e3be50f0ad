"""Where and in what precision to compute: decided once, from the machine's facts, at the entry point.

bf16 autocast is ~1.6-2.5x faster than fp32 on CPUs with native bf16 (AVX512_BF16, AMX) and 10-400x *slower* where
oneDNN emulates it (AVX2-only CPUs, or an AVX-512 CPU whose kernels are capped by `ONEDNN_MAX_CPU_ISA`). The
question is therefore native or emulated, not "10% faster", and it is answered from facts that do not change with
the machine's load: the vector ISA PyTorch uses, oneDNN's bf16 support and its ISA cap, a GPU's compute capability.
A short probe (one convolution in both precisions) may only *veto* bf16, when it measures it several times slower
than fp32: a busy machine slows both precisions alike and never moves the ratio that far (measured: 0.4-2.0x native
under load, 0.08x emulated). Each CLI command and API front door calls `choose_runtime` once and passes the frozen
`Runtime` down; a run records it (config.yaml, checkpoints, results.json) and a resumed run reuses it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from resnet_cifar.allocator import allocator_state
from resnet_cifar.errors import ConfigError

BF16_CHOICES = (True, False, "auto")  # auto: chosen here from the hardware
BF16_VETO = 0.2  # bf16 measured at less than this fraction of fp32's speed is emulated, whatever the flags say
BF16_ISAS = ("AVX512_BF16", "AMX")  # the CPU ISAs (as cpu_isa names them) with native bf16 dot products
CUDA_BF16_CAPABILITY = (8, 0)  # Ampere and later compute bf16 natively


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

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context for forward passes. A fresh (cheap) context object per use: a torch.autocast
        object keeps the state it restores on itself, so sharing one across threads (a server) would mix them up."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

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
            "allocator": allocator_state(),
        }


def named_device(name: str | torch.device) -> torch.device | None:
    """The device a name says (None for `auto`), or ConfigError: only the CPU, CUDA and `cuda:N` are supported."""
    if str(name) == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index):
        raise ConfigError(f"device: must be cpu, cuda, cuda:N or auto; got {str(name)!r}")
    return device


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """`auto` → CUDA when available, else CPU; anything else must be the CPU or a CUDA device that exists."""
    device = named_device(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name} requested but CUDA is not available")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device: {name} requested but this machine has {count} CUDA device(s) (cuda:0 ...)")
    return device


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_threads(threads: int) -> int:
    """`threads` (0: one per core) if this machine can give it; more threads than cores only slows every step."""
    cores = available_cores()
    if threads < 0 or threads > cores:
        raise ConfigError(f"threads: must be 0 (one per core) to {cores} (the cores of this machine), got {threads}")
    return threads


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


def onednn_isa_cap() -> str | None:
    """`ONEDNN_MAX_CPU_ISA` when it caps oneDNN below its bf16 kernels (e.g. AVX2, AVX512_CORE), else None."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if not cap or cap in ("ALL", "DEFAULT") or any(tag in cap for tag in ("BF16", "FP16", "AMX", "AVX10")):
        return None
    return cap


def cpu_bf16_emulated_reason() -> str | None:
    """Why bf16 would be emulated on this CPU, from its facts alone; None where the hardware and kernels claim it."""
    isa = cpu_isa()
    if isa not in BF16_ISAS:
        return "no native bf16"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "oneDNN has no bf16 kernels here"
    cap = onednn_isa_cap()
    return f"ONEDNN_MAX_CPU_ISA={cap} emulates bf16" if cap else None


def cpu_has_native_bf16() -> bool:
    """What the hardware and PyTorch's kernels claim (the probe may still veto it)."""
    return cpu_bf16_emulated_reason() is None


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


def clear_caches() -> None:
    """Forget the facts and the probe read so far (tests that fake a machine; ATEN_CPU_CAPABILITY changes)."""
    for cached in (cpu_name, cpu_isa, bf16_speedup, _warn_once):
        cached.cache_clear()


# --- the veto probe --------------------------------------------------------------------------------------------------


def wall_seconds(run: Callable[[], None], bf16: bool) -> float:
    """The probe's timer: wall-clock seconds of `run()` (tests swap in a fake timer; the probe's work still runs)."""
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


PROBE_TIMER: Callable[[Callable[[], None], bool], float] = wall_seconds


def _time_conv(device: torch.device, bf16: bool, repeats: int = 3) -> float:
    """Best-of-`repeats` seconds of a 3x3 convolution forward + backward on the CPU, the bulk of a ResNet step."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 64, 16, 16, generator=generator).to(device)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last)

    def run() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            conv(x).float().sum().backward()

    # An emulated precision is slow enough to tell from the first call, so a first call over the budget is the answer.
    return best_seconds(lambda: PROBE_TIMER(run, bf16), repeats, budget=0.5)


def best_seconds(run: Callable[[], float], repeats: int, budget: float) -> float:
    """The fastest of up to `repeats` timed calls of `run` after one warm-up call (one-off kernel selection), stopping
    once the timed calls took `budget` seconds; a warm-up call slower than the budget is the answer by itself."""
    warm_up = run()
    if warm_up > budget:
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
    """fp32 time / bf16 time of a probe convolution on `device` (> 1: bf16 is faster). Measured once per process,
    from any grad mode (callers may sit under no_grad or inference_mode), without moving any seeded random stream."""
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        return _time_conv(device, bf16=False) / _time_conv(device, bf16=True)


# --- the choice ------------------------------------------------------------------------------------------------------


def choose_precision(
    device: torch.device, requested: bool | str = "auto", recorded: bool | None = None, given: str = "as asked"
) -> tuple[bool, str]:
    """(use bf16, why) for `device`; `requested` is True, False or "auto" (`given`: how a True/False came, for the
    reason, e.g. "as the run recorded").

    `recorded`: the precision that trained weights were tested in. With "auto" it is reused where this machine runs
    it natively, so that evaluating a run reproduces its numbers; where bf16 would be emulated, fp32 stands in."""
    if requested not in BF16_CHOICES:
        raise ConfigError(f"bf16: must be true, false or auto; got {requested!r}")
    if requested == "auto" and recorded is False:
        return False, f"{gpu_name(device) if device.type == 'cuda' else cpu_isa()}, fp32 as the weights were tested"
    if requested == "auto" and recorded is True:
        use, reason = choose_precision(device, "auto")
        return use, reason + (" (the weights were tested in bf16)" if not use else "")
    if device.type == "cuda":
        return _choose_cuda(device, requested, given)
    isa = cpu_isa()
    if requested is False:
        return False, f"{isa}, fp32 {given}"
    emulated = cpu_bf16_emulated_reason()
    if emulated is not None:
        if requested is True:
            _warn_once(f"bf16 on this CPU ({isa}, {emulated}) is emulated: 10-400x slower than fp32. Go on.")
            return True, f"{isa}, bf16 {given} (emulated: {emulated})"
        return False, f"{isa}, {emulated} → fp32"
    if requested is True:
        return True, f"{isa}, bf16 {given}"
    speedup = bf16_speedup(device)
    if speedup < BF16_VETO:
        return False, f"{isa}, but bf16 measured {1 / speedup:.0f}x slower than fp32 (emulated) → fp32"
    return True, f"{isa}, native bf16 → bf16"


@functools.cache
def _warn_once(message: str) -> None:
    print(f"resnet-cifar: warning: {message}", file=sys.stderr, flush=True)


def _choose_cuda(device: torch.device, requested: bool | str, given: str) -> tuple[bool, str]:
    name = gpu_name(device)
    if requested is False:
        return False, f"{name}, fp32 {given}"
    native = torch.cuda.get_device_capability(device) >= CUDA_BF16_CAPABILITY
    if requested is True:
        if not native and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"bf16: {name} does not support bfloat16")
        return True, f"{name}, bf16 {given}"
    if not native:
        return False, f"{name}, no native bf16 (compute capability below 8.0) → fp32"
    return True, f"{name}, native bf16 → bf16"


def choose_runtime(
    device: str | torch.device = "auto",
    bf16: bool | str = "auto",
    threads: int = 0,
    recorded: bool | None = None,
    given: str = "as asked",
) -> Runtime:
    """Resolve the device, set the thread count (0: leave PyTorch's default, one per core) and pick the precision
    (`recorded`, `given`: see choose_precision): the one decision a command or API front door makes and passes down."""
    resolved = resolve_device(device)
    if check_threads(threads):
        torch.set_num_threads(threads)
    use_bf16, reason = choose_precision(resolved, bf16, recorded, given)
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
