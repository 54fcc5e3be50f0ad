"""Machine kinds faked by their *facts*, so that every machine's code path runs on any machine.

What is faked is only what the machine is: the vector ISA PyTorch reports, the CPU's flags, oneDNN's bf16 support,
`ONEDNN_MAX_CPU_ISA`, CUDA's presence, name, compute capability and bf16 support, and the clock the precision probe
reads (its convolutions still run). Everything that decides from those facts, and everything downstream of the
decision (bf16 autocast included, emulated where this machine has no native bf16), is the real code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from resnet_cifar import machine, runtime


@dataclass(frozen=True)
class CpuKind:
    capability: str  # what torch.backends.cpu.get_cpu_capability() says (ATEN_CPU_CAPABILITY honoured)
    flags: tuple[str, ...]  # /proc/cpuinfo flags
    mkldnn_bf16: bool  # torch.ops.mkldnn._is_mkldnn_bf16_supported()
    env: dict[str, str] = field(default_factory=dict)
    # (fp32, bf16) seconds the probe's clock reads for each warmed-up call (its convolutions still run)
    probe_seconds: tuple[float, float] = (1.0, 0.6)
    bf16: bool = False  # the precision `auto` must choose on it


AVX512 = ("avx2", "avx512f", "avx512bw", "avx512vl")
CPU_KINDS = {
    # Zen 3 and older: bf16 only emulated
    "avx2": CpuKind("AVX2", ("avx2",), mkldnn_bf16=False, probe_seconds=(1.0, 40.0)),
    # Skylake/Cascade Lake servers: AVX-512 without bf16 (oneDNN says bf16 is "supported": through avx512_core)
    "avx512": CpuKind("AVX512", AVX512, mkldnn_bf16=True, probe_seconds=(1.0, 2.6)),
    # Zen 4, Cooper Lake: native bf16
    "avx512_bf16": CpuKind("AVX512", (*AVX512, "avx512_bf16"), mkldnn_bf16=True, bf16=True),
    # the same CPU with oneDNN capped to AVX2 (what the suite's second pass does on a Zen 4): mkldnn says no
    "avx512_bf16_capped_avx2": CpuKind(
        "AVX512", (*AVX512, "avx512_bf16"), mkldnn_bf16=False, env={"ONEDNN_MAX_CPU_ISA": "AVX2"}
    ),
    # capped to AVX512_CORE: mkldnn still says yes, kernels emulate (measured 0.36-0.42x fp32's speed on a Zen 4)
    "avx512_bf16_capped_core": CpuKind(
        "AVX512",
        (*AVX512, "avx512_bf16"),
        mkldnn_bf16=True,
        env={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
        probe_seconds=(1.0, 2.6),
    ),
    # flags and oneDNN claim bf16 but the kernels emulate it (a hypervisor hiding an ISA, say): the probe vetoes
    "avx512_bf16_emulated": CpuKind("AVX512", (*AVX512, "avx512_bf16"), mkldnn_bf16=True, probe_seconds=(1.0, 40.0)),
    # native bf16, and a probe disturbed by a busy machine (bf16 measured slower than fp32): still bf16
    "avx512_bf16_busy": CpuKind(
        "AVX512", (*AVX512, "avx512_bf16"), mkldnn_bf16=True, probe_seconds=(1.0, 2.4), bf16=True
    ),
    # Sapphire Rapids and later
    "amx": CpuKind("AVX512", (*AVX512, "avx512_bf16", "amx_bf16"), mkldnn_bf16=True, bf16=True),
}


@dataclass(frozen=True)
class CudaKind:
    name: str
    capability: tuple[int, int]
    bf16_supported: bool  # torch.cuda.is_bf16_supported() (True on some pre-Ampere GPUs: emulated)
    bf16: bool  # what `auto` must choose


CUDA_KINDS = {
    "h100": CudaKind("NVIDIA H100 80GB HBM3", (9, 0), True, bf16=True),
    "a100": CudaKind("NVIDIA A100-SXM4-40GB", (8, 0), True, bf16=True),
    "t4": CudaKind("Tesla T4", (7, 5), True, bf16=False),
    "v100": CudaKind("Tesla V100-SXM2-16GB", (7, 0), False, bf16=False),
}


def fake_cpu(monkeypatch, kind: CpuKind) -> None:
    """Make this process see the CPU `kind` (no CUDA); caches are cleared now and when the test ends."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    for name, value in kind.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: kind.capability)
    info = {"model name": "Fake CPU", "cpu family": "25", "model": "0", "flags": " ".join(kind.flags)}
    monkeypatch.setattr(machine, "_cpuinfo", lambda: dict(info))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: kind.mkldnn_bf16)
    fp32_seconds, bf16_seconds = kind.probe_seconds

    def fake_clock(run, bf16: bool) -> float:
        run()  # the probe's real work, in whatever grad mode the caller is in
        return bf16_seconds if bf16 else fp32_seconds

    monkeypatch.setattr(runtime, "PROBE_TIMER", fake_clock)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runtime.clear_caches()


def fake_cuda(monkeypatch, kind: CudaKind, count: int = 1) -> None:
    """Make this process see `count` GPUs of `kind` (decisions only: nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: kind.name)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: kind.capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: kind.bf16_supported)
    runtime.clear_caches()
