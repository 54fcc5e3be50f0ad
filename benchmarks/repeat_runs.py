"""Train one config with several seeds, each as its own `resnet-cifar train` process, and report mean ± std.

Wall-clock time is measured around the whole process (start-up, data loading, training, test evaluation, pictures),
which is what a user waits for. The last line is machine-readable, and the result is appended to the results ledger
(docs/results/ledger.jsonl) with `--record`, from which the docs' tables are rendered.

    python benchmarks/repeat_runs.py --config configs/default.yaml --seeds 0 1 2

`--parallel N` runs N seeds at once (on a GPU that one small run leaves mostly idle); their wall-clock times then
share the machine and are not a single run's time. `--processes N` runs each seed as N torchrun processes (DDP,
gloo on a CPU) of `--threads` / N threads each, timed around the whole torchrun command:

    python benchmarks/repeat_runs.py --config configs/cpu94-bf16.yaml --seeds 0 1 2 --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from resnet_cifar.runtime import machine_description
from resnet_cifar_lab import ledger
from resnet_cifar_lab.scripts import run_main


def train_command(processes: int, *args: str) -> list[str]:
    """`python -m resnet_cifar train ARGS`; with more than one process, under torchrun, each process given its share
    of this machine's threads (a `--threads` among ARGS comes later and wins)."""
    if processes <= 1:
        return [sys.executable, "-m", "resnet_cifar", "train", *args]
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    return [sys.executable, *torchrun, "-m", "resnet_cifar", "train", "--threads", threads, *args]


def run_seed(config: str, seed: int, output_dir: Path, extra: list[str], processes: int = 1) -> dict:
    name = f"{Path(config).stem}-seed{seed}"
    command = train_command(
        processes,
        "--config",
        config,
        "--seed",
        str(seed),
        "--name",
        name,
        "--output-dir",
        str(output_dir),
        "--overwrite",
        "--progress",
        "none",
        *extra,
    )
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"seed {seed} failed:\n{result.stderr}")
    results = json.loads((output_dir / name / "results.json").read_text())
    return {
        "seed": seed,
        "test_acc": results["top1"],
        "wall_s": wall,
        "train_s": results["train_seconds"],
        "train_images": results["train_images"],
        "precision": results["runtime"]["precision"],
    }


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output-dir", default="outputs/repeat")
    parser.add_argument("--parallel", type=int, default=1, help="seeds run at once (times then share the machine)")
    parser.add_argument("--processes", type=int, default=1, help="torchrun processes per seed (threads shared out)")
    ledger.add_flags(parser)
    parser.add_argument("extra", nargs="*", help="more train flags, after --")
    args = parser.parse_args()
    rows = []
    print(f"machine: {machine_description()}")
    processes = f", {args.processes} torchrun processes each" if args.processes > 1 else ""
    print(f"config {args.config}, seeds {args.seeds}{processes}")
    print(f"{'seed':>4} {'test acc':>9} {'wall s':>7} {'train s':>8} {'train images':>13}")
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        runs = pool.map(
            lambda seed: run_seed(args.config, seed, Path(args.output_dir), args.extra, args.processes), args.seeds
        )
        for row in runs:  # inside the pool's block: each seed's row as soon as it ends, not all after the last
            rows.append(row)
            print(
                f"{row['seed']:>4} {row['test_acc']:>9.4f} {row['wall_s']:>7.1f} {row['train_s']:>8.1f} "
                f"{row['train_images']:>13,}",
                flush=True,
            )
    acc_mean, acc_std = mean_std([r["test_acc"] for r in rows])
    wall_mean, wall_std = mean_std([r["wall_s"] for r in rows])
    print(
        f"test accuracy {acc_mean:.4f} ± {acc_std:.4f} (min {min(r['test_acc'] for r in rows):.4f}); "
        f"wall {wall_mean:.1f} ± {wall_std:.1f} s"
    )
    print(
        f"test_acc_mean={acc_mean:.4f} test_acc_std={acc_std:.4f} test_acc_min={min(r['test_acc'] for r in rows):.4f} "
        f"wall_s_mean={wall_mean:.1f} seeds={len(rows)}"
    )
    if args.record:
        numbers = {key: [row[key] for row in rows] for key in ("test_acc", "wall_s", "train_s")}
        numbers["parallel"], numbers["processes"] = args.parallel, args.processes
        precision = "/".join(sorted({row["precision"] for row in rows}))
        ledger.append(
            ledger.record("repeat_runs", numbers, precision=precision, seeds=args.seeds, config=args.config),
            args.ledger,
        )


if __name__ == "__main__":
    sys.exit(run_main(main))  # a missing dataset or a bad flag value: one line, no traceback
