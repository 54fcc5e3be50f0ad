"""Tune on the validation split only: train every candidate of a grid and rank them by final validation accuracy.

A grid file names candidates, each a set of training options laid over one base config:

    base: ../../configs/subset5k.yaml      # relative to the grid file
    candidates:
      w48-e70: {}
      no-cutout: {cutout: 0, crop_padding: 2}

Each candidate runs as its own `resnet-cifar train` process with the test set untouched (`test_at_end: false`);
`--parallel N` runs N at once (a GPU that one small run leaves mostly idle). The table is sorted by validation
accuracy (single view; `TTA val` is the last epoch's at the config's TTA level), and the last line names the best
candidate. A sweep that was stopped (Ctrl-C, SIGTERM, a lost machine) is continued by running the same command
again: each candidate resumes exactly from its last epoch's checkpoint. Then `benchmarks/repeat_runs.py` measures
the chosen config on the test set over several seeds.

    python benchmarks/sweep.py benchmarks/grids/subset5k.yaml --parallel 4 -- --device cuda --bf16 false

`--processes N` trains each candidate as N torchrun processes (DDP; on a CPU each gets its share of the threads).
With `--record`, each candidate that finishes is recorded in the results ledger at once, with the
configuration it trained with; a candidate the ledger holds with this very configuration is not trained again, so a
sweep spread over several machines (or continued in a fresh clone) keeps every candidate that finished anywhere.
When all candidates have finished, the ranked table is appended to the ledger too (once: a rerun that trained
nothing adds nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from repeat_runs import train_command
from resnet_cifar import run_folder
from resnet_cifar.run_folder import read_metrics
from resnet_cifar.runtime import machine_description
from resnet_cifar_lab import ledger
from resnet_cifar_lab.scripts import run_main


def write_candidate(grid_path: Path, base: str, name: str, overrides: dict, out: Path) -> Path:
    """A config file for one candidate: the grid's base, then the candidate's options."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.yaml"
    base_path = (grid_path.parent / base).resolve()
    path.write_text(yaml.safe_dump({"base": str(base_path), "name": name, **overrides}, sort_keys=False))
    return path


def candidate_command(config: Path, out: Path, extra: list[str], processes: int = 1) -> list[str]:
    """Train the candidate; one that a stopped sweep left with a checkpoint continues from it exactly (`--resume`,
    `extra` then holding only runtime flags such as --threads), so a sweep cut off by a signal is run again as is."""
    run_dir = out / config.stem
    if run_folder.checkpoint_path(run_dir).is_file():
        return train_command(processes, "--resume", str(run_dir), "--progress", "none", *extra)
    where = ("--config", str(config), "--output-dir", str(out), "--overwrite", "--no-test-at-end", "--no-plots")
    return train_command(processes, *where, "--progress", "none", *extra)


def run_candidate(config: Path, out: Path, extra: list[str], processes: int = 1) -> dict:
    name = config.stem
    command = candidate_command(config, out, extra, processes)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        return {"name": name, "error": result.stderr.strip().splitlines()[-1:] or ["failed"], "wall_s": wall}
    rows = [row for row in read_metrics(out / name) if row["val_acc"] is not None]
    last = rows[-1]
    metadata = json.loads((out / name / "last.json").read_text())
    calibration = metadata.get("calibration") or {}
    return {
        "name": name,
        "val_acc": last["val_acc"],
        "tta_val_acc": calibration.get("val_acc", math.nan),  # at the config's TTA level, after the last epoch
        "best_val_acc": max(row["val_acc"] for row in rows),
        "epochs": last["epoch"],
        "train_s": sum(row["seconds"] for row in read_metrics(out / name)),
        "wall_s": wall,
        "config": yaml.safe_load((out / name / "config.yaml").read_text()),
        "precision": metadata["runtime"]["precision"],
    }


KEEP = ("name", "val_acc", "tta_val_acc", "best_val_acc", "epochs", "train_s")  # a candidate's published numbers
CANDIDATE_RECORD = "sweep candidate"  # the ledger's record of one finished candidate
RUNTIME_FIELDS = {"output_dir", "data_dir", "download", "progress", "threads", "device"}  # where and how fast only


def recipe_of(config: Path, extra: list[str]) -> dict:
    """What a candidate's numbers depend on: its configuration as `resnet-cifar train --config CONFIG EXTRA` resolves
    it, less where and how fast it runs."""
    from resnet_cifar.config import add_config_flags, flag_overrides, load_config

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(extra)
    resolved = json.loads(json.dumps(load_config(config, flag_overrides(args)).to_dict()))
    return {key: value for key, value in resolved.items() if key not in RUNTIME_FIELDS}


def precision_of(row: dict) -> str:
    return row["precision"]


def record_candidate(grid_path: Path, row: dict, recipe: dict, path: Path, lock: threading.Lock) -> None:
    """One finished candidate in the ledger, the moment it finishes: a lost machine loses no finished candidate."""
    numbers = {"grid": grid_path.as_posix(), "candidate": {key: row[key] for key in KEEP}, "recipe": recipe}
    precision, seeds = precision_of(row), [recipe["seed"]]
    entry = ledger.record(CANDIDATE_RECORD, numbers, precision=precision, seeds=seeds, config=grid_path)
    with lock:  # the ledger's file lock guards processes; this guards the threads of one sweep
        ledger.append(entry, path)


def recorded_candidates(grid_path: Path, entries: list[dict]) -> dict[str, list[dict]]:
    """The candidates of this grid the ledger holds, by name, newest first: each a result row with its recipe."""
    found: dict[str, list[dict]] = {}
    for entry in reversed(entries):
        numbers = entry["numbers"]
        if entry["benchmark"] == CANDIDATE_RECORD and numbers["grid"] == grid_path.as_posix():
            config = {"seed": numbers["recipe"].get("seed", 0)}
            row = {**numbers["candidate"], "wall_s": 0.0, "config": config, "recipe": numbers["recipe"]}
            row["precision"] = entry["precision"]
            found.setdefault(row["name"], []).append(row)
    return found


def record_sweep(grid_path: Path, done: list[dict], path: Path) -> None:
    """The ranked candidates (validation only) as a ledger record; the precision and seeds each ran with. A sweep the
    ledger holds with these very numbers is not recorded again."""
    numbers = {"grid": grid_path.as_posix(), "candidates": [{key: row[key] for key in KEEP} for row in done]}
    if ledger.holds("sweep", numbers, path):
        print(f"already recorded: this sweep with these very numbers is in {path}")
        return
    precisions = {precision_of(row) for row in done}
    precision = precisions.pop() if len(precisions) == 1 else "mixed"
    seeds = sorted({row["config"].get("seed", 0) for row in done})
    entry = ledger.record("sweep", numbers, precision=precision, seeds=seeds, config=grid_path)
    if precision == "mixed":  # a candidate the machine ran in another precision says so
        entry["precision_by_candidate"] = {row["name"]: precision_of(row) for row in done}
    ledger.append(entry, path)
    print(f"recorded in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", help="grid YAML: base + candidates")
    parser.add_argument("--output-dir", default="outputs/sweep")
    parser.add_argument("--parallel", type=int, default=1, help="candidates trained at once")
    parser.add_argument("--only", nargs="+", default=None, help="run only these candidates")
    parser.add_argument("--processes", type=int, default=1, help="torchrun processes per candidate")
    ledger.add_flags(parser)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.extra = argv[split + 1 :]  # more train flags for every candidate, after --
    grid_path = Path(args.grid)
    grid = yaml.safe_load(grid_path.read_text())
    out = Path(args.output_dir)
    candidates = {k: v or {} for k, v in grid["candidates"].items() if args.only is None or k in args.only}
    configs = [
        write_candidate(grid_path, grid["base"], name, opts, out / "configs") for name, opts in candidates.items()
    ]
    recipes = {config.stem: recipe_of(config, args.extra) for config in configs}
    recorded = recorded_candidates(grid_path, ledger.read_ledger(args.ledger))
    finished = {  # the ledger may hold candidates that this run leaves out (--only) or that left the grid
        name: next((row for row in rows if row["recipe"] == recipes[name]), None)
        for name, rows in recorded.items()
        if name in recipes
    }
    todo = [config for config in configs if finished.get(config.stem) is None]
    lock = threading.Lock()

    def train(config: Path) -> dict:
        row = run_candidate(config, out, args.extra, args.processes)
        if "error" not in row and args.record:
            record_candidate(grid_path, row, recipes[config.stem], args.ledger, lock)
        return row

    print(f"machine: {machine_description()}")
    print(f"grid {grid_path}: {len(configs)} candidates, {args.parallel} at once, extra flags {args.extra}")
    if len(todo) < len(configs):
        print(f"finished already (the ledger holds them): {', '.join(sorted(set(recipes) - {c.stem for c in todo}))}")
    sys.stdout.flush()
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        trained = {row["name"]: row for row in pool.map(train, todo)}
    rows = [trained.get(config.stem) or finished[config.stem] for config in configs]
    failed = [row for row in rows if "error" in row]
    done = sorted((row for row in rows if "error" not in row), key=lambda row: -row["val_acc"])
    print(
        f"{'candidate':<24} {'final val':>9} {'TTA val':>8} {'best val':>9} {'epochs':>6} {'train s':>8} {'wall s':>7}"
    )
    for row in done:
        print(
            f"{row['name']:<24} {row['val_acc']:>9.4f} {row['tta_val_acc']:>8.4f} {row['best_val_acc']:>9.4f} "
            f"{row['epochs']:>6} "
            f"{row['train_s']:>8.1f} {row['wall_s']:>7.1f}"
        )
    for row in failed:
        print(f"{row['name']:<24} FAILED: {row['error'][-1]}")
    if done:
        print(f"best={done[0]['name']} val_acc={done[0]['val_acc']:.4f}")
    if done and not failed and args.record and args.only is None:
        record_sweep(grid_path, done, args.ledger)


if __name__ == "__main__":
    sys.exit(run_main(main))  # a missing dataset or a bad flag value: one line, no traceback
