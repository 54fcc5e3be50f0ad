"""Depth at the paper's scale (He et al. 2015, Table 6 and Fig. 6): plain and residual nets of growing depth, each a
whole run of one recipe (configs/paper-resnets.yaml) in OUT/runs/NET-seedS, continued where it stopped when the
command runs again. A finished net's result is kept in OUT/nets/ with the configuration it ran; OUT/depth.json holds
every net's numbers and OUT/figure6.png draws Fig. 6."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from resnet_cifar.config import RUNTIME_KEYS, load_config
from resnet_cifar.errors import ConfigError
from resnet_cifar.experiments.degradation import TestErrorEachEpoch
from resnet_cifar.experiments.settings import DepthSettings
from resnet_cifar.experiments.study_reports import AGAIN, NetProgress, write_report
from resnet_cifar.experiments.subruns import as_it_began, continue_from_checkpoint, held
from resnet_cifar.files import atomic_write_bytes
from resnet_cifar.run_folder import training_seconds
from resnet_cifar.runtime import Runtime
from resnet_cifar.train.loop import Trainer


def study_runs(settings: DepthSettings) -> list[tuple[str, int]]:
    """(net, seed) in the order they are trained: shallow before deep, each plain net beside its residual twin, so
    that a study cut short has whole pairs to show; the extra seeds of Table 6 come last."""
    runs = []
    for depth in sorted(set(settings.plain_depths) | set(settings.residual_depths)):
        for kind, depths in (("resnet", settings.residual_depths), ("plain", settings.plain_depths)):
            if depth in depths:
                runs += [(f"{kind}{depth}", seed) for seed in settings.seeds]
    for depth, seeds in sorted(settings.more_seeds.items()):
        runs += [(f"resnet{int(depth)}", int(seed)) for seed in seeds if int(seed) not in settings.seeds]
    return runs


def run_name(net: str, seed: int) -> str:
    return f"{net}-seed{seed}"


def net_config(settings: DepthSettings, net: str, seed: int, out: Path):
    overrides = {
        "model": net,
        "seed": seed,
        "name": run_name(net, seed),
        "output_dir": str(out / "runs"),
        "data_dir": settings.data_dir,
        "checkpoint_every": 1,  # what an interruption loses is at most one epoch
        "plots": False,
        "progress": "auto",
    }
    if settings.epochs is not None:
        overrides["epochs"] = settings.epochs
    if settings.train_size is not None:
        overrides["train_size"] = settings.train_size
    return load_config(settings.config, overrides)


def net_fingerprint(settings: DepthSettings, net: str, seed: int) -> dict:
    """What a finished net's numbers depend on: its configuration, less where it ran and where it was written."""
    config = net_config(settings, net, seed, Path("."))
    skip = {"output_dir", *RUNTIME_KEYS}
    return {key: value for key, value in json.loads(json.dumps(config.to_dict())).items() if key not in skip}


def train_net(settings: DepthSettings, net: str, seed: int, out: Path, test, runtime: Runtime) -> dict:
    config = net_config(settings, net, seed, out)
    run_dir = out / "runs" / run_name(net, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = TestErrorEachEpoch(test.images, test.labels, run_dir / "test_error_per_epoch.json")
    trainer = Trainer(config, run_dir, as_it_began(runtime, run_dir), callbacks=[tracker], resume_hint=AGAIN)
    continue_from_checkpoint(trainer)
    tracker.keep_first(trainer.position.epoch)
    results = trainer.fit()
    test_calibration = results["calibration"]["test"]
    return {
        "net": net, "seed": seed, "epochs": trainer.epochs, "steps_per_epoch": trainer.steps_per_epoch,
        "train_error_per_epoch": [1 - row["train_acc"] for row in trainer.history],
        "test_error_per_epoch": tracker.errors, "test_error": tracker.errors[-1], "test_error_tta": 1 - results["top1"],
        "ece_before": test_calibration["ece_before"], "ece_after": test_calibration["ece_after"],
        "temperature": test_calibration["temperature"], "train_seconds": training_seconds(trainer.history),
        "precision": trainer.runtime.precision, "machine": results["runtime"]["machine"],
    }


def _stored(out: Path, name: str) -> Path:
    return out / "nets" / f"{name}.json"


def finished_net(settings: DepthSettings, net: str, seed: int, out: Path) -> dict | None:
    """The result kept in `out` for this net, when it finished with this very configuration."""
    path = _stored(out, run_name(net, seed))
    entry = json.loads(path.read_text()) if path.is_file() else {}
    return entry.get("result") if entry.get("config") == net_fingerprint(settings, net, seed) else None


def run_depth(
    settings: DepthSettings, out: Path, runtime: Runtime, *, train: bool = True, log: Callable[[str], None] = print
) -> dict:
    """Train every net of the study not yet finished in `out` (unless `train` is False) and gather them all.

    A net that another process is training in `out` (its folder is locked) is left to it: the same command started
    twice on one `--out`, one thread each, trains two nets at once on two cores."""
    settings.validate()
    runs = study_runs(settings)
    finished = {run_name(*run): finished_net(settings, *run, out) for run in runs}
    todo = [run for run in runs if finished[run_name(*run)] is None]
    if train and todo:
        from resnet_cifar.data.locate import load_test_sample

        test = load_test_sample(settings.data_dir, settings.test_images)
        counter = NetProgress(len(runs), log)
        for _ in range(len(runs) - len(todo)):
            counter.skip()
        for net, seed in todo:
            _train_unless_taken(settings, net, seed, out, test, runtime, counter, log)
        finished = {run_name(*run): finished_net(settings, *run, out) for run in runs}
    nets = {name: result for name, result in finished.items() if result is not None}
    return {"settings": asdict(settings), "nets": nets, "missing": [name for name in finished if name not in nets]}


def _train_unless_taken(settings, net, seed, out, test, runtime, counter, log) -> None:
    name = run_name(net, seed)
    try:
        lock = held(out / "runs" / name).acquire()
    except ConfigError:
        counter.skip()
        log(f"{name}: another process is training it; on to the next net")
        return
    try:
        if finished_net(settings, net, seed, out) is not None:
            return  # finished by another process since this one began
        counter.start(name)
        started = time.perf_counter()
        result = train_net(settings, net, seed, out, test, runtime)
        result["wall_seconds"] = time.perf_counter() - started
        entry = {"config": net_fingerprint(settings, net, seed), "result": result}
        atomic_write_bytes(_stored(out, name), json.dumps(entry).encode())  # before another process may look
    finally:
        lock.release()
    counter.done()
    log(f"{name}: test error {result['test_error']:.2%} ({result['train_seconds'] / 3600:.2f} h)")


def summary_lines(results: dict) -> list[str]:
    """One line per finished net: its test error single view and with flip TTA, and its training time."""
    lines = []
    for name, net in results["nets"].items():
        lines.append(
            f"{name}: test error {net['test_error']:.2%} single view, {net['test_error_tta']:.2%} with the run's "
            f"TTA; training error {net['train_error_per_epoch'][-1]:.2%}; {net['train_seconds'] / 3600:.2f} h"
        )
    return lines


def write_depth(results: dict, out: Path) -> list[Path]:
    from resnet_cifar.viz.study_plots import plot_figure6

    return write_report(out, "depth.json", results, "nets", pictures={"figure6.png": plot_figure6})
