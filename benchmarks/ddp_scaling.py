"""Training speed with 1 process vs N torchrun processes (DDP, gloo on CPU), side by side in one run.

Same config and global batch for both; the 1-process run uses all the threads, each of the N processes gets
threads / N. Reported: training images/s from the runs' metrics.csv (validation excluded) and wall seconds of the
whole command (start-up and data loading included), medians over --rounds alternations. `--sync-bn` adds a third
contender, N processes with batch statistics over the global batch (the single process's recipe up to rounding);
`--train-args` passes more flags to every run (e.g. '--crop-size 32' to time whole-image epochs of a config that
starts on small windows). One would expect 2 processes on 2 cores to gain nothing over 1 process with 2 threads;
on some CPUs they do (oneDNN's kernels use one thread better than two), which this measures.

    python benchmarks/ddp_scaling.py --config configs/fast80.yaml --epochs 1 --processes 2
    python benchmarks/ddp_scaling.py --config configs/cpu94.yaml --epochs 0.5 --sync-bn --train-args='--crop-size 32'
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resnet_cifar.runtime import machine_description
from resnet_cifar_lab.scripts import run_main


def train(folder: Path, name: str, processes: int, threads: int, args: argparse.Namespace, sync_bn: bool = False):
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [
        sys.executable,
        *(launcher if processes > 1 else []),
        "-m",
        "resnet_cifar",
        "train",
        "--config",
        str(Path(args.config).resolve()),
        "--epochs",
        str(args.epochs),
        "--threads",
        str(threads),
        "--output-dir",
        str(folder),
        "--name",
        name,
        "--progress",
        "lines",
        "--no-plots",
        "--no-test-at-end",
        "--eval-every",
        "1000",
        *(["--sync-bn"] if sync_bn else []),
        *shlex.split(args.train_args),
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - started
    return training_rate(folder / name / "metrics.csv"), wall


def training_rate(metrics_csv: Path) -> float:
    """Training images/s of a whole run from its metrics.csv (epochs weighted by their time; validation excluded)."""
    with open(metrics_csv, newline="") as file:
        rows = list(csv.DictReader(file))
    images = sum(float(r["images_per_s"]) * float(r["seconds"]) for r in rows)
    return images / sum(float(r["seconds"]) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/fast80.yaml")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads in all")
    parser.add_argument("--sync-bn", action="store_true", help="also time N processes with synchronised batch norm")
    parser.add_argument("--train-args", default="", help="more train flags for every run, one string")
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the contenders (medians reported)")
    args = parser.parse_args()
    each = max(1, args.threads // args.processes)
    contenders = {
        f"1 process  x {args.threads} threads": (1, args.threads, False),
        f"{args.processes} processes x {each} threads": (args.processes, each, False),
    }
    if args.sync_bn:
        contenders[f"{args.processes} processes x {each} threads, sync BN"] = (args.processes, each, True)
    measured: dict[str, list[tuple[float, float]]] = {label: [] for label in contenders}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(args.rounds):
            for index, (label, (processes, threads, sync_bn)) in enumerate(contenders.items()):
                name = f"r{round_}-c{index}"
                measured[label].append(train(Path(folder), name, processes, threads, args, sync_bn))
    print(f"machine: {machine_description()}")
    print(f"{args.config} {args.train_args}, {args.epochs:g} epoch(s), {args.threads} threads, {os.cpu_count()} cores")
    base = statistics.median(rate for rate, _ in measured[next(iter(contenders))])
    for label, runs in measured.items():
        rate = statistics.median(r for r, _ in runs)
        wall = statistics.median(w for _, w in runs)
        rates = ", ".join(f"{r:.0f}" for r, _ in runs)
        print(f"{label:<38}: {rate:7.0f} img/s training ({rates}), {wall:6.1f} s wall, vs 1 process {rate / base:.2f}")
    second = list(measured.values())[1]
    print(f"ddp_vs_single={statistics.median(r for r, _ in second) / base:.2f}")


if __name__ == "__main__":
    sys.exit(run_main(main))  # a missing dataset or a bad flag value: one line, no traceback
