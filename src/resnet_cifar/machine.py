"""What machine this is, as data (brand, family/model, the generation users know it by, ISA, cores), and one formatter
that names it as users know it: `AMD EPYC Zen 5 (family 26 model 2), AVX-512 bf16, 2 cores`. Generations come from
a small table; a family/model missing from it prints as its numbers."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

GENERATIONS = {  # (vendor, family, model) -> what users call the core
    ("AMD", 23, 1): "Zen",
    ("AMD", 23, 8): "Zen+",
    ("AMD", 23, 49): "Zen 2",
    ("AMD", 23, 113): "Zen 2",
    ("AMD", 25, 1): "Zen 3",
    ("AMD", 25, 33): "Zen 3",
    ("AMD", 25, 17): "Zen 4",
    ("AMD", 25, 97): "Zen 4",
    ("AMD", 25, 160): "Zen 4c",
    ("AMD", 26, 2): "Zen 5",
    ("AMD", 26, 17): "Zen 5",
    ("Intel", 6, 85): "Skylake/Cascade Lake",
    ("Intel", 6, 106): "Ice Lake",
    ("Intel", 6, 143): "Sapphire Rapids",
    ("Intel", 6, 207): "Emerald Rapids",
    ("Intel", 6, 173): "Granite Rapids",
    ("Intel", 6, 175): "Sierra Forest",
}
ISA_NAMES = {"AVX2": "AVX2", "AVX512": "AVX-512", "AVX512_BF16": "AVX-512 bf16", "AMX": "AMX bf16"}
BRANDS = (("EPYC", "AMD EPYC"), ("Ryzen", "AMD Ryzen"), ("Xeon", "Intel Xeon"), ("Core", "Intel Core"))


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


def cpu_flags() -> set[str]:
    return set(_cpuinfo().get("flags", "").split())


def brand(model_name: str) -> str:
    """`AMD EPYC`, `Intel Xeon`... from the model name, else the model name itself."""
    return next((name for word, name in BRANDS if word in model_name), model_name.strip() or platform.machine())


@functools.cache
def cpu_facts() -> dict:
    """The CPU as data: brand, vendor, family, model (None where the OS does not say), its generation or None."""
    info = _cpuinfo()
    name = brand(info.get("model name") or platform.processor() or "")
    vendor = (
        "AMD" if "AMD" in info.get("vendor_id", name) else "Intel" if "Intel" in info.get("vendor_id", name) else ""
    )
    family = int(info["cpu family"]) if info.get("cpu family", "").isdigit() else None
    model = int(info["model"]) if info.get("model", "").isdigit() else None
    return {
        "cpu": name, "vendor": vendor, "family": family, "model": model,
        "generation": GENERATIONS.get((vendor, family, model)),
    }


def cores() -> int:
    return os.cpu_count() or 1


def cpu_label(facts: dict) -> str:
    """`AMD EPYC Zen 5 (family 26 model 2)`; `Intel Xeon (family 6 model 167)` for a model missing from the table."""
    name = " ".join(part for part in (facts["cpu"], facts.get("generation")) if part)
    if facts.get("family") is not None and facts.get("model") is not None:
        name += f" (family {facts['family']} model {facts['model']})"
    return name


def describe(facts: dict) -> str:
    """A machine's facts as users know them: `AMD EPYC Zen 5 (family 26 model 2), AVX-512 bf16, 2 cores`, the AVX2
    kernels of an AVX-512 CPU as `AVX2 kernels`, or the GPU: `one NVIDIA H100 80GB`."""
    if facts.get("gpu"):
        return f"one {facts['gpu']}"
    isa = ISA_NAMES.get(facts["isa"], facts["isa"])
    if facts.get("kernels"):
        isa = f"{ISA_NAMES.get(facts['kernels'], facts['kernels'])} kernels"
    count = facts["cores"]
    return f"{cpu_label(facts)}, {isa}, {count} core{'' if count == 1 else 's'}"
