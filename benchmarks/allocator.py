"""Training speed with glibc's default malloc vs freed memory kept in the process (resnet_cifar.allocator), side by
side in one run, and with tcmalloc preloaded when the machine has it.

Each contender is a whole `resnet-cifar train` command (real data, the config's recipe), the contenders alternated
--rounds times; reported per contender: the median training images/s (from the run's metrics.csv) and the median user
and system CPU seconds of the whole command (the kernel's share is what mapping and unmapping costs).

    python benchmarks/allocator.py --config configs/cpu94.yaml --epochs 0.3 --rounds 3
    python benchmarks/allocator.py --config configs/cpu94.yaml --epochs 0.3 --train-args='--crop-size 32'
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ddp_scaling import training_rate
from resnet_cifar.runtime import machine_description
from resnet_cifar_lab.scripts import run_main

TCMALLOC = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",  # Debian/Ubuntu: libtcmalloc-minimal4
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",  # Fedora: gperftools-libs
)


def contenders() -> dict[str, dict[str, str]]:
    found = {
        "glibc defaults": {"RESNET_CIFAR_MALLOC": "system"},
        "freed memory kept": {},
    }
    tcmalloc = next((path for path in TCMALLOC if os.path.exists(path)), None)
    if tcmalloc:
        found["tcmalloc preloaded"] = {"LD_PRELOAD": tcmalloc}
    return found


def train(folder: Path, name: str, extra_env: dict[str, str], args: argparse.Namespace) -> tuple[float, float, float]:
    """One whole training command: (training images/s, user CPU s, system CPU s)."""
    command = [
        sys.executable,
        *("-m", "resnet_cifar", "train", "--progress", "lines", "--no-plots", "--no-test-at-end"),
        *("--eval-every", "1000"),
        *("--config", str(Path(args.config).resolve()), "--epochs", str(args.epochs), "--output-dir", str(folder)),
        *("--name", name),
        *shlex.split(args.train_args),
    ]
    env = {key: value for key, value in os.environ.items() if key not in ("RESNET_CIFAR_MALLOC", "LD_PRELOAD")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, capture_output=True, text=True, env={**env, **extra_env})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rate = training_rate(folder / name / "metrics.csv")
    return rate, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/cpu94.yaml")
    parser.add_argument("--epochs", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the contenders (medians reported)")
    parser.add_argument("--train-args", default="", help="more train flags for every run, one string")
    args = parser.parse_args()
    measured: dict[str, list[tuple[float, float, float]]] = {label: [] for label in contenders()}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for index, (label, extra_env) in enumerate(contenders().items()):
                measured[label].append(train(Path(folder), f"r{round_}-c{index}", extra_env, args))
    print(f"machine: {machine_description()}")
    print(f"{args.config} {args.train_args}, {args.epochs:g} epoch(s), {args.rounds} rounds, medians")
    base = statistics.median(rate for rate, _, _ in measured["glibc defaults"])
    for label, runs in measured.items():
        rate, user, system = (statistics.median(column) for column in zip(*runs, strict=True))
        rates = ", ".join(f"{r:.0f}" for r, _, _ in runs)
        print(
            f"{label:<20}: {rate:6.0f} img/s training ({rates}), CPU {user:5.1f} s user + {system:4.1f} s system, "
            f"vs glibc defaults {rate / base:.2f}"
        )


if __name__ == "__main__":
    sys.exit(run_main(main))  # a missing dataset or a bad flag value: one line, no traceback
