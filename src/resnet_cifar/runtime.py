"""Where and in what precision to compute: requested as auto, bf16 or fp32, decided once at the entry point from the
machine's facts, passed down as a frozen `Runtime` that every run records. bf16 is ~2x faster where the CPU has it
natively (AVX512_BF16, AMX) and 10-400x slower where oneDNN emulates it, so the facts decide: PyTorch's vector ISA,
oneDNN's bf16 support and ISA cap, a GPU's compute capability. Where they say native, a probe may still veto bf16,
from warmed-up, interleaved timings only and at five times slower: load slows both precisions alike."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from resnet_cifar import machine
from resnet_cifar.allocator import allocator_state
from resnet_cifar.choices import PRECISIONS
from resnet_cifar.errors import ConfigError

BF16_VETO = 0.2  # bf16 measured at less than this fraction of fp32's speed (warmed up) is emulated
BF16_ISAS = ("AVX512_BF16", "AMX")  # the CPU ISAs (as cpu_isa names them) with native bf16 dot products
CUDA_BF16_CAPABILITY = (8, 0)  # Ampere and later compute bf16 natively


def check_precision(value: object, key: str = "precision") -> str:
    """The one validator of a precision request: `auto`, `bf16` or `fp32`, else ConfigError naming `key`."""
    if value not in PRECISIONS:
        raise ConfigError(f"{key}: must be auto, bf16 or fp32; got {value!r}")
    return value


@dataclass(frozen=True)
class Runtime:
    """The resolved device and precision of a run (or an evaluation), with the reason for the precision."""

    device: torch.device
    precision: str  # "bf16" or "fp32"
    reason: str  # e.g. "AVX2, no native bf16 → fp32"
    threads: int

    @property
    def bf16(self) -> bool:
        return self.precision == "bf16"

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
        facts = machine_facts(self.device)
        return {
            "device": str(self.device), "precision": self.precision, "reason": self.reason, "threads": self.threads,
            "machine": machine.describe(facts), "facts": facts, "allocator": allocator_state(),
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


@functools.cache
def cpu_isa() -> str:
    """The vector ISA PyTorch's CPU kernels use: AVX2, AVX512, AVX512_BF16 or AMX (honours ATEN_CPU_CAPABILITY)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX512":
        return capability
    return hardware_isa()


def hardware_isa() -> str:
    """The best vector ISA the CPU's flags name, whatever PyTorch's kernels are capped to."""
    flags = machine.cpu_flags()
    for flag, isa in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512_BF16"), ("avx512f", "AVX512"), ("avx2", "AVX2")):
        if flag in flags:
            return isa
    return torch.backends.cpu.get_cpu_capability()


def machine_facts(device: torch.device | None = None) -> dict:
    """This machine as data (resnet_cifar.machine): the CPU, its ISA, the kernels' ISA where it is capped lower, the
    cores, PyTorch's threads and version, and the GPU in use."""
    facts = {**machine.cpu_facts(), "isa": hardware_isa(), "cores": machine.cores()}
    if cpu_isa() != facts["isa"] and cpu_isa() in ("AVX2", "DEFAULT", "NO AVX"):
        facts["kernels"] = cpu_isa()
    facts |= {"threads": torch.get_num_threads(), "torch": torch.__version__}
    if device is None and torch.cuda.is_available():
        device = torch.device("cuda")
    if device is not None and device.type == "cuda":
        facts["gpu"] = gpu_name(device)
    return facts


def machine_description(device: torch.device | None = None) -> str:
    """This machine as users know it, e.g. `AMD EPYC Zen 5 (family 26 model 2), AVX-512 bf16, 2 cores`."""
    return machine.describe(machine_facts(device))


def onednn_isa_cap() -> str | None:
    """`ONEDNN_MAX_CPU_ISA` when it caps oneDNN below its bf16 kernels (e.g. AVX2, AVX512_CORE), else None."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if not cap or cap in ("ALL", "DEFAULT") or any(tag in cap for tag in ("BF16", "FP16", "AMX", "AVX10")):
        return None
    return cap


def cpu_bf16_emulated_reason() -> str | None:
    """Why bf16 would be emulated on this CPU, from its facts alone; None where the hardware and kernels claim it."""
    if cpu_isa() not in BF16_ISAS:
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


def clear_caches() -> None:
    """Forget the facts and the probe read so far (tests that fake a machine; ATEN_CPU_CAPABILITY changes)."""
    for cached in (machine.cpu_facts, cpu_isa, bf16_speedup, _warn_once):
        cached.cache_clear()


# --- the veto probe --------------------------------------------------------------------------------------------------


def wall_seconds(run: Callable[[], None], bf16: bool) -> float:
    """The probe's timer: wall-clock seconds of `run()` (tests swap in a fake timer; the probe's work still runs)."""
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


PROBE_TIMER: Callable[[Callable[[], None], bool], float] = wall_seconds
PROBE_PAIRS = 5  # timed (fp32, bf16) pairs after the warm-up; the fastest of each precision is compared


def _probe_step(device: torch.device, bf16: bool) -> Callable[[], None]:
    """A 3x3 convolution's forward and backward, the bulk of a ResNet step, in one precision."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 64, 16, 16, generator=generator).to(device)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last)

    def run() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            conv(x).float().sum().backward()

    return run


@functools.cache
def bf16_speedup(device: torch.device) -> float:
    """fp32 time / bf16 time of the probe convolution on `device` (> 1: bf16 is faster), from warmed-up calls only:
    each precision runs once untimed (kernel creation), then PROBE_PAIRS interleaved pairs, and the fastest call of
    each is compared. Measured once per process, from any grad mode, without moving any seeded random stream."""
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        steps = {bf16: _probe_step(device, bf16) for bf16 in (False, True)}
        for run in steps.values():
            run()  # the first call creates the kernels: never timed, however long it takes on a busy machine
        best = {False: float("inf"), True: float("inf")}
        for _ in range(PROBE_PAIRS):
            for bf16, run in steps.items():
                best[bf16] = min(best[bf16], PROBE_TIMER(run, bf16))
    return best[False] / best[True]


# --- the choice ------------------------------------------------------------------------------------------------------


def choose_precision(
    device: torch.device, requested: str = "auto", recorded: str | None = None, given: str = "as asked"
) -> tuple[str, str]:
    """(precision, why) for `device`; `requested` is auto, bf16 or fp32 (`given`: how a bf16 or fp32 request came,
    for the reason, e.g. "as the run recorded").

    `recorded`: the precision that trained weights were tested in. With `auto` it is reused where this machine runs
    it natively, so that evaluating a run reproduces its numbers; where bf16 would be emulated, fp32 stands in."""
    check_precision(requested)
    if requested == "auto" and recorded == "fp32":
        return "fp32", f"{gpu_name(device) if device.type == 'cuda' else cpu_isa()}, fp32 as the weights were tested"
    if requested == "auto" and recorded == "bf16":
        precision, reason = choose_precision(device, "auto")
        return precision, reason + (" (the weights were tested in bf16)" if precision == "fp32" else "")
    if device.type == "cuda":
        return _choose_cuda(device, requested, given)
    isa = cpu_isa()
    if requested == "fp32":
        return "fp32", f"{isa}, fp32 {given}"
    emulated = cpu_bf16_emulated_reason()
    if emulated is not None:
        if requested == "bf16":
            _warn_once(f"bf16 on this CPU ({isa}, {emulated}) is emulated: 10-400x slower than fp32. Go on.")
            return "bf16", f"{isa}, bf16 {given} (emulated: {emulated})"
        return "fp32", f"{isa}, {emulated} → fp32"
    if requested == "bf16":
        return "bf16", f"{isa}, bf16 {given}"
    speedup = bf16_speedup(device)
    if speedup < BF16_VETO:
        return "fp32", f"{isa}, but bf16 measured {1 / speedup:.0f}x slower than fp32 (emulated) → fp32"
    return "bf16", f"{isa}, native bf16 → bf16"


@functools.cache
def _warn_once(message: str) -> None:
    print(f"resnet-cifar: warning: {message}", file=sys.stderr, flush=True)


def _choose_cuda(device: torch.device, requested: str, given: str) -> tuple[str, str]:
    name = gpu_name(device)
    if requested == "fp32":
        return "fp32", f"{name}, fp32 {given}"
    native = torch.cuda.get_device_capability(device) >= CUDA_BF16_CAPABILITY
    if requested == "bf16":
        if not native and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"precision: {name} does not support bfloat16")
        return "bf16", f"{name}, bf16 {given}"
    if not native:
        return "fp32", f"{name}, no native bf16 (compute capability below 8.0) → fp32"
    return "bf16", f"{name}, native bf16 → bf16"


def choose_runtime(
    device: str | torch.device = "auto", precision: str = "auto", threads: int = 0, recorded: str | None = None,
    given: str = "as asked",
) -> Runtime:
    """Resolve the device, set the thread count (0: leave PyTorch's default, one per core) and pick the precision
    (`recorded`, `given`: see choose_precision): the one decision a command or API front door makes and passes down."""
    resolved = resolve_device(device)
    if check_threads(threads):
        torch.set_num_threads(threads)
    chosen, reason = choose_precision(resolved, precision, recorded, given)
    return Runtime(resolved, chosen, reason, torch.get_num_threads())


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
