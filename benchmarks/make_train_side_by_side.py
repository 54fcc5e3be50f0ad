"""Time `make train` in this checkout and in another one side by side: the same seeds, alternating which goes first,
nothing else running, so a virtual machine's drift between runs falls on both alike.

    git worktree add ../previous <commit>         # the recipe to compare against, with its own .venv (make creates it)
    python benchmarks/make_train_side_by_side.py --against ../previous --seeds 0 1 2 --record

Each run is `make train` as a user types it, with `--seed S --overwrite` added to the configuration (`CONFIG=...`),
timed around the whole command: start-up, data, set-up, training, validation, the test pass and pictures. Printed:
each run's wall time and test accuracy, then mean ± std of both checkouts and their ratio. With the environment
variables `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2` an AVX-512 machine runs
both on AVX2 kernels.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from resnet_cifar.runtime import machine_description
from resnet_cifar_lab import ledger
from resnet_cifar_lab.scripts import run_main

ROOT = Path(__file__).resolve().parents[1]
ACCURACY = re.compile(r"test_accuracy=([\d.]+)")
CONFIG_LINE = re.compile(r"^CONFIG \?= (\S+)", re.M)


def make_config(checkout: Path) -> str:
    """The configuration a checkout's `make train` runs (its Makefile's CONFIG)."""
    found = CONFIG_LINE.search((checkout / "Makefile").read_text())
    if found is None:
        sys.exit(f"{checkout}/Makefile sets no CONFIG: is it a clone of this project?")
    return found.group(1)


def make_train(checkout: Path, seed: int) -> dict:
    config = f"{make_config(checkout)} --seed {seed} --overwrite --progress none"
    started = time.perf_counter()
    done = subprocess.run(["make", "-s", "-C", str(checkout), "train", f"CONFIG={config}"], capture_output=True,
                          text=True)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not ACCURACY.search(done.stdout):
        sys.exit(
            f"make train in {checkout} failed (exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    run = checkout / "outputs" / Path(make_config(checkout)).stem  # make train's run folder (--overwrite: the same)
    precision = json.loads((run / "results.json").read_text())["runtime"]["precision"]
    return {"wall_s": seconds, "test_acc": float(ACCURACY.findall(done.stdout)[-1]), "precision": precision}


def summary(rows: list[dict], key: str) -> tuple[float, float]:
    values = [row[key] for row in rows]
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, type=Path, help="the other checkout (a clone or a worktree)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ledger.add_flags(parser)
    args = parser.parse_args()
    checkouts = {"this": ROOT, "against": args.against.resolve()}
    configs = {name: make_config(path) for name, path in checkouts.items()}
    print(f"machine: {machine_description()}; this: {configs['this']}, against: {configs['against']} in {args.against}")
    rows: dict[str, list[dict]] = {"this": [], "against": []}
    for index, seed in enumerate(args.seeds):
        order = ("this", "against") if index % 2 == 0 else ("against", "this")
        for name in order:
            row = make_train(checkouts[name], seed)
            rows[name].append(row)
            print(f"seed {seed} {name:<8} {row['wall_s']:6.1f} s  test accuracy {row['test_acc']:.4f}", flush=True)
    for name in rows:
        (wall, wall_std), (acc, acc_std) = summary(rows[name], "wall_s"), summary(rows[name], "test_acc")
        print(f"{name:<8} {configs[name]}: {wall:.1f} ± {wall_std:.1f} s, test accuracy {acc:.4f} ± {acc_std:.4f}")
    ratio = summary(rows["this"], "wall_s")[0] / summary(rows["against"], "wall_s")[0]
    print(f"this / against, whole command: {ratio:.3f}")
    if args.record:
        numbers = {name: {key: [row[key] for row in rows[name]] for key in ("wall_s", "test_acc")} for name in rows}
        numbers |= {"configs": configs, "against_commit": ledger.git_commit(checkouts["against"]), "ratio": ratio}
        precisions = {row["precision"] for name in rows for row in rows[name]}
        precision = precisions.pop() if len(precisions) == 1 else "mixed"
        command = [
            "benchmarks/make_train_side_by_side.py",
            "--against",
            "../previous",
            "--seeds",
            *map(str, args.seeds),
        ]
        entry = ledger.record("make_train_side_by_side", numbers, precision=precision, seeds=args.seeds,
                              config=configs["this"], command=command)  # fmt: skip
        ledger.append(entry, args.ledger)
        print(f"recorded in {args.ledger}")


if __name__ == "__main__":
    sys.exit(run_main(main))
