"""Wall-clock time until the full 10,000-image test accuracy first reaches a target.

The run is timed from the start (data loading and model set-up included). The test set is evaluated at fixed points
(`--every` epochs, and at the end) with the config's TTA level; that evaluation time is excluded from the clock and
reported separately. Nothing is selected on the test set: training follows the config exactly as `resnet-cifar
train` would. Several seeds give mean ± std; the last line is machine-readable:

    time_to_target_s=<s> target=<acc> reached=<acc> total_s=<s>     (means over seeds, for the first target)

    python benchmarks/time_to_accuracy.py --config configs/fast80.yaml --target 0.80 --seeds 0 1 2

Several targets are timed in the same runs (`--target 0.80 0.90 0.94`); the last line then also has
`time_to_80_s=... time_to_90_s=...` (nan where some seed never reached it).

`--whole-command` also runs the real command (`resnet-cifar train --config CONFIG --seed S`) once per seed as a
subprocess and splits its wall-clock time into start-up (interpreter, imports, exit), data, model set-up, training,
validation, the test evaluation and the pictures (from the run's results.json):

    python benchmarks/time_to_accuracy.py --config configs/default.yaml --target 0.80 --seeds 0 1 2 --whole-command

`--profile` instead prints the operators that take the time in a few training steps of the config (torch.profiler),
so the next speed-up is found by measurement:

    python benchmarks/time_to_accuracy.py --config configs/default.yaml --profile

Every report starts with the machine (CPU model, ISA, threads, GPU) and the precision chosen for the config.

`--baseline CONFIG` also times a second config (typically the paper's recipe on the same model) with the same target
and seeds in the same run, stopping each baseline run once it reaches the target, and prints the ratio of the two
times-to-target before the machine-readable line:

    python benchmarks/time_to_accuracy.py --config configs/archive/fast-resnet20.yaml \
        --baseline configs/archive/paper-resnet20.yaml --target 0.80
"""

from __future__ import annotations

import time

IMPORT_STARTED = time.perf_counter()  # before torch is imported: start-up cost is reported, not hidden

import argparse
import dataclasses
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from resnet_cifar.config import load_config
from resnet_cifar.evaluate.metrics import accuracy
from resnet_cifar.runtime import choose_runtime, cpu_isa, machine_description
from resnet_cifar.train.loop import Callback, Trainer
from resnet_cifar_lab import ledger
from resnet_cifar_lab.scripts import run_main

IMPORT_SECONDS = time.perf_counter() - IMPORT_STARTED


class TestAtFixedPoints(Callback):
    """Evaluates the test set every `every` epochs; records (training wall seconds, accuracy)."""

    def __init__(self, images, labels, every: float, started: float, stop_at: float | None = None):
        self.images, self.labels, self.every, self.started = images, labels, every, started
        self.stop_at = stop_at
        self.eval_seconds = 0.0
        self.points: list[tuple[int, float, float]] = []  # (epoch, clock seconds excluding evaluations, accuracy)

    def clock(self) -> float:
        return time.perf_counter() - self.started - self.eval_seconds

    def on_epoch_end(self, trainer, row):
        epoch = row["epoch"]
        if epoch % self.every and epoch != trainer.epochs:
            return
        at = self.clock()
        began = time.perf_counter()
        logits = trainer.predict(self.images, tta=trainer.config.tta)
        reached = accuracy(logits, self.labels)
        self.eval_seconds += time.perf_counter() - began
        self.points.append((epoch, at, reached))
        if self.stop_at is not None and reached >= self.stop_at:
            trainer.epochs = epoch  # ends the loop after this epoch; the rest of the schedule is not needed


def runtime_of(config):
    """The run's runtime, as `resnet-cifar train` decides it."""
    return choose_runtime(config.device, config.precision, config.threads)


def run_once(config_path: str, seed: int, every: float, overrides: dict, stop_at: float | None = None) -> dict:
    started = time.perf_counter()
    config = load_config(
        config_path, {"seed": seed, "progress": "none", "plots": False, "test_at_end": False, **overrides}
    )
    with tempfile.TemporaryDirectory() as folder:
        config = dataclasses.replace(config, output_dir=folder)
        load_started = time.perf_counter()
        trainer = Trainer(config, Path(folder) / "run", runtime_of(config))
        test = trainer.data.load_test()
        data_seconds = time.perf_counter() - load_started  # includes building the model
        tracker = TestAtFixedPoints(test.images, test.labels, every, started, stop_at)
        trainer.callbacks.append(tracker)
        trainer.fit()
        total = tracker.clock()
    return {
        "seed": seed,
        "points": tracker.points,
        "total_s": total,
        "eval_s": tracker.eval_seconds,
        "data_s": data_seconds,
        "final": tracker.points[-1][2],
    }


def first_reaching(points: list[tuple[int, float, float]], target: float) -> tuple[float, float] | None:
    for _epoch, seconds, reached in points:
        if reached >= target:
            return seconds, reached
    return None


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def run_config(config_path: str, args, overrides: dict, stop_at: float | None = None) -> list[dict]:
    config = load_config(config_path, overrides)
    targets = ", ".join(f"{t:.2%}" for t in args.target)
    print(
        f"config {config_path}: {config.model} {config.model_options}, "
        + (f"{config.steps} steps" if config.steps else f"{config.epochs:g} epochs")
        + f", batch "
        f"{config.batch_size}, TTA level {config.tta}; target {targets}; torch threads "
        f"{args.threads or torch.get_num_threads()}; importing torch and the package took {IMPORT_SECONDS:.1f} s "
        "(not in the times below)" + ("; each run stops at the target" if stop_at else ""),
        flush=True,
    )
    runs = []
    for seed in args.seeds:
        run = run_once(config_path, seed, args.every, overrides, stop_at)
        run["hits"] = {target: first_reaching(run["points"], target) for target in args.target}
        runs.append(run)
        trail = "  ".join(f"ep{e}:{a:.4f}@{s:.0f}s" for e, s, a in run["points"])
        when = "; ".join(
            f"{target:.0%} " + (f"at {hit[0]:.1f} s ({hit[1]:.4f})" if hit else "not reached")
            for target, hit in run["hits"].items()
        )
        print(
            f"seed {seed}: {when}; total {run['total_s']:.1f} s (data+setup {run['data_s']:.1f} s, "
            f"evaluations excluded {run['eval_s']:.1f} s); final {run['final']:.4f}\n  {trail}",
            flush=True,
        )
    return runs


def summarise(runs: list[dict]) -> dict[float, tuple[float, float]]:
    """Per target: (mean seconds to it, or nan when any run missed it; mean accuracy when first reached, else the
    mean final accuracy). Also prints the finals and totals."""
    finals, totals = [r["final"] for r in runs], [r["total_s"] for r in runs]
    print(f"final test accuracy {mean_std(finals)} (min {min(finals):.4f}); total {mean_std(totals)} s")
    summary = {}
    for target in runs[0]["hits"]:
        reached = [r["hits"][target] for r in runs if r["hits"][target]]
        print(
            f"  {target:.0%}: reached in {len(reached)}/{len(runs)} runs"
            + (f"; time to it {mean_std([h[0] for h in reached])} s" if reached else "")
        )
        if len(reached) == len(runs):
            summary[target] = (statistics.mean(h[0] for h in reached), statistics.mean(h[1] for h in reached))
        else:
            summary[target] = (math.nan, statistics.mean(finals))
    return summary


PARTS = ("data_s", "setup_s", "train_s", "validation_s", "test_s", "pictures_s")


def whole_command(config_path: str, seed: int, threads: int) -> dict:
    """Wall-clock time of `resnet-cifar train` in a fresh process, split by the run's own timings."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "resnet_cifar", "train", "--config", config_path, "--seed", str(seed)]
        command += ["--output-dir", folder, "--name", "run", "--progress", "none"]
        command += ["--threads", str(threads)] if threads else []
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        results = json.loads((Path(folder) / "run" / "results.json").read_text())
    parts = {key: results["timings"].get(key, 0.0) for key in PARTS}
    return {"wall_s": wall, "startup_s": wall - sum(parts.values()), **parts, "accuracy": results["top1"]}


def report_whole_commands(config_path: str, args) -> float:
    runs = [whole_command(config_path, seed, args.threads) for seed in args.seeds]
    columns = ("wall_s", "startup_s", *PARTS)
    print(f"whole command `resnet-cifar train --config {config_path}` (start-up = interpreter, imports and exit):")
    print("  seed  " + "  ".join(f"{c.removesuffix('_s'):>10}" for c in columns) + "   test acc")
    for seed, run in zip(args.seeds, runs, strict=True):
        print(f"  {seed:>4}  " + "  ".join(f"{run[c]:>9.1f}s" for c in columns) + f"   {run['accuracy']:.4f}")
    walls = [r["wall_s"] for r in runs]
    print(f"  whole command {mean_std(walls)} s; test accuracy {mean_std([r['accuracy'] for r in runs])}", flush=True)
    return statistics.mean(walls)


def profile_steps(config_path: str, overrides: dict, steps: int = 5, rows: int = 15) -> None:
    """The operators that take the time in `steps` training steps (after 2 warm-up steps), by self time."""
    from torch.profiler import ProfilerActivity, profile

    config = load_config(config_path, {"progress": "none", "plots": False, "test_at_end": False, **overrides})
    with tempfile.TemporaryDirectory() as folder:
        config = dataclasses.replace(config, output_dir=folder)
        trainer = Trainer(config, Path(folder) / "run", runtime_of(config))
        plan = trainer.stream.plan(0, 0, trainer.crop_size(0))
        batches = [trainer.stream.batch(plan, index) for index in range(steps + 2)]
        for images, labels in batches[:2]:
            trainer._step(images, labels)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.runtime.device.type == "cuda" else [])
        with profile(activities=activities, record_shapes=True) as profiler:
            for images, labels in batches[2:]:
                trainer._step(images, labels)
    sort = "self_cuda_time_total" if trainer.runtime.device.type == "cuda" else "self_cpu_time_total"
    print(f"top operators over {steps} training steps of batch {config.batch_size} ({sort}):")
    table = profiler.key_averages(group_by_input_shape=True).table(
        sort_by=sort, row_limit=rows, max_name_column_width=36
    )
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--target", type=float, nargs="+", help="test accuracies to reach, e.g. 0.80 (or 0.80 0.90)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--every", type=float, default=1, help="evaluate the test set every N epochs (and at the end)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--baseline", help="a second config timed to the same target (stopping there), for a ratio")
    parser.add_argument("--whole-command", action="store_true", help="also time `resnet-cifar train` per seed, split")
    parser.add_argument("--profile", action="store_true", help="only profile a few training steps of the config")
    ledger.add_flags(parser)
    args = parser.parse_args()
    overrides = {"threads": args.threads} if args.threads else {}
    config = load_config(args.config, overrides)
    chosen = runtime_of(config)
    print(f"machine: {machine_description(chosen.device)}; {config.model} runs on {chosen.describe()}", flush=True)
    if args.profile:
        profile_steps(args.config, overrides)
        return
    if args.target is None:
        parser.error("--target is required (unless --profile)")
    whole = report_whole_commands(args.config, args) if args.whole_command else math.nan
    runs = run_config(args.config, args, overrides)
    ours = summarise(runs)
    base_runs = run_config(args.baseline, args, overrides, stop_at=max(args.target)) if args.baseline else []
    if args.baseline:
        base = summarise(base_runs)
        for target in args.target:
            print(
                f"baseline_vs_ours={base[target][0] / ours[target][0]:.2f}  ({args.baseline}: {base[target][0]:.1f} s, "
                f"{args.config}: {ours[target][0]:.1f} s to {target:.0%})"
            )
    first = args.target[0]
    total = statistics.mean(r["total_s"] for r in runs)
    each = " ".join(f"time_to_{round(100 * t)}_s={ours[t][0]:.1f}" for t in args.target) if len(args.target) > 1 else ""
    print(
        f"time_to_target_s={ours[first][0]:.1f} target={first} reached={ours[first][1]:.4f} total_s={total:.1f} "
        + (each + " " if each else "")
        + f"whole_command_s={whole:.1f} precision={chosen.precision} isa={cpu_isa()} device={chosen.device}"
    )
    if args.record:
        numbers = {"target": first, "config": args.config, "seconds": seconds_to(runs, first), "final": finals(runs)}
        if args.baseline:
            numbers.update(baseline=args.baseline, baseline_seconds=seconds_to(base_runs, first))
        entry = ledger.record(
            "time_to_accuracy", numbers, precision=chosen.precision, seeds=args.seeds, config=args.config
        )
        ledger.append(entry, args.ledger)
        print(f"recorded in {args.ledger}")


def seconds_to(runs: list[dict], target: float) -> list[float | None]:
    """Each seed's seconds to `target` (None where it was not reached)."""
    return [run["hits"][target][0] if run["hits"][target] else None for run in runs]


def finals(runs: list[dict]) -> list[float]:
    return [run["final"] for run in runs]


if __name__ == "__main__":
    sys.exit(run_main(main))  # a missing dataset or a bad flag value: one line, no traceback
