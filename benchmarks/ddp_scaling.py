"""Training speed with 1 process vs N torchrun processes (DDP, gloo on CPU), side by side in one run.

Same config and global batch for both; the 1-process run uses all the threads, each of the N processes gets
threads / N. Reported: training images/s from the runs' metrics.csv (validation excluded) and wall seconds of the
whole command (start-up and data loading included). On one machine with 2 cores, 2 processes cannot be faster than
1 process with 2 threads: the point is to measure the overhead of the distributed path honestly.

    python benchmarks/ddp_scaling.py --config configs/fast80.yaml --epochs 1 --processes 2
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resnet_cifar.cli import run_reporting_errors
from resnet_cifar.runtime import machine_description


def train(folder: Path, processes: int, threads: int, args: argparse.Namespace) -> tuple[float, float]:
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
        f"p{processes}",
        "--progress",
        "lines",
        "--no-plots",
        "--no-test-at-end",
        "--eval-every",
        "1000",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - started
    with open(folder / f"p{processes}" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    images = sum(float(r["images_per_s"]) * float(r["seconds"]) for r in rows)
    seconds = sum(float(r["seconds"]) for r in rows)
    return images / seconds, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/fast80.yaml")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads in all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        one = train(Path(folder), 1, args.threads, args)
        many = train(Path(folder), args.processes, max(1, args.threads // args.processes), args)
    print(f"machine: {machine_description()}")
    print(f"{args.config}, {args.epochs:g} epoch(s), {args.threads} threads in all, {os.cpu_count()} cores")
    print(f"1 process  x {args.threads} threads: {one[0]:7.0f} img/s training, {one[1]:6.1f} s wall")
    print(
        f"{args.processes} processes x {max(1, args.threads // args.processes)} threads: {many[0]:7.0f} img/s "
        f"training, {many[1]:6.1f} s wall"
    )
    print(f"ddp_vs_single={many[0] / one[0]:.2f}")


if __name__ == "__main__":
    sys.exit(run_reporting_errors(main))  # a missing dataset or a bad flag value: one line, no traceback
