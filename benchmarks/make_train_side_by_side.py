"""Time `make train` in this checkout and in another one side by side: the same seeds, alternating which goes first,
nothing else running, so a virtual machine's drift between runs falls on both alike.

    git worktree add ../previous <commit>         # the recipe to compare against, with its own .venv (make creates it)
    python benchmarks/make_train_side_by_side.py --against ../previous --seeds 0 1 2 --record

Each run is `make train` as a user types it, with `--seed S --overwrite` added to the configuration (`CONFIG=...`),
timed around the whole command: start-up, data, set-up, training, validation, the test pass and pictures. Printed:
each run's wall time and test accuracy, then mean ± std of both checkouts and their ratio, and where each checkout's
command spent its time (the phases its run's results.json times; the remainder is start-up and the rest). With the
environment variables `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2` an AVX-512
machine runs both on AVX2 kernels.
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


def phases(timings: dict, wall_s: float) -> dict[str, float]:
    """Where one `make train` spent its wall time: the phases its results.json times (`timings`' seconds, `*_s`) and
    the remainder, start-up and the rest (the interpreter, imports, make, checkpoint writes and exit)."""
    parts = {key: float(value) for key, value in timings.items() if key.endswith("_s")}
    return {"startup_and_rest_s": wall_s - sum(parts.values()), **parts}


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
    results = json.loads((run / "results.json").read_text())
    return {"wall_s": seconds, "test_acc": float(ACCURACY.findall(done.stdout)[-1]),
            "precision": results["runtime"]["precision"], "phases": phases(results["timings"], seconds)}  # fmt: skip


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
    per_phase = {
        name: {key: [row["phases"][key] for row in runs] for key in runs[0]["phases"]} for name, runs in rows.items()
    }
    for name, parts in per_phase.items():
        means = ", ".join(f"{key.removesuffix('_s')} {statistics.mean(values):.2f}" for key, values in parts.items())
        print(f"{name:<8} mean seconds: {means}")
    if args.record:
        numbers = {
            name: {"wall_s": [row["wall_s"] for row in runs], "test_acc": [row["test_acc"] for row in runs],
                   "phases": per_phase[name]}
            for name, runs in rows.items()
        }  # fmt: skip
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
