"""Depth at the paper's scale (He et al. 2015, Table 6 and Fig. 6): plain and residual nets of growing depth, each a
whole training run of one recipe (configs/paper-resnets.yaml) on 45,000 images.

Every net is an ordinary run folder (OUT/runs/NET-seedS: checkpoint after every epoch, metrics.csv, results.json with
the test accuracy, flip TTA and the validation-fitted temperature), so a finished ResNet can be shipped as weights and
an interrupted one continues exactly where it stopped when the command runs again. The test error after every
epoch (single view) draws Fig. 6; the residual nets' final test errors, mean ± std over seeds, make Table 6.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import atomic_write_bytes
from resnet_cifar.errors import ConfigError
from resnet_cifar.experiments.degradation import TestErrorEachEpoch
from resnet_cifar.experiments.report import AGAIN, NetProgress, write_report
from resnet_cifar.experiments.settings import DepthSettings
from resnet_cifar.experiments.subruns import as_it_began, continue_from_checkpoint, held
from resnet_cifar.runtime import cpu_isa, cpu_name, gpu_name
from resnet_cifar.train.config import load_config
from resnet_cifar.train.loop import Callback, Trainer

# Test error (%) of He et al. 2015 Table 6 (164 epochs), akamaster/pytorch_resnet_cifar10 (200 epochs) and
# chenyaofo/pytorch-cifar-models (torch.hub weights), as each publishes it.
ANCHORS = {
    "He et al. 2015": {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43},
    "akamaster": {20: 8.27, 32: 7.37, 44: 6.90, 56: 6.61, 110: 6.32},
    "chenyaofo": {20: 7.40, 32: 6.47, 44: 5.99, 56: 5.63},
}


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


class MachineEachEpoch(Callback):
    """Where each epoch ran and how long it took, kept in `path` as it grows: a study outlives a working day, so a net
    cut off on one CPU may continue on another, and its hours mean something only beside the machine that spent them."""

    def __init__(self, path: Path):
        self.path = path
        self.epochs: list[dict | None] = json.loads(path.read_text()) if path.is_file() else []

    def keep_first(self, epochs: int) -> None:
        self.epochs = self.epochs[:epochs]

    def on_epoch_end(self, trainer, row):
        self.epochs += [None] * (row["epoch"] - 1 - len(self.epochs))  # epochs trained before this record existed
        self.epochs.append({"machine": where_it_runs(trainer.runtime), "seconds": row["seconds"]})
        atomic_write_bytes(self.path, json.dumps(self.epochs).encode())

    def complete(self, history: list[dict], finisher: str) -> list[dict]:
        """Every epoch's record, written back whole; epochs trained before machines were recorded count for the
        machine that finished the run (the study's first nets, trained on one machine from start to end)."""
        recorded = self.epochs + [None] * (len(history) - len(self.epochs))
        self.epochs = [
            known or {"machine": finisher, "seconds": row["seconds"]}
            for row, known in zip(history, recorded, strict=True)
        ]
        atomic_write_bytes(self.path, json.dumps(self.epochs).encode())
        return self.epochs


def where_it_runs(runtime) -> str:
    """e.g. `AMD EPYC (family 25 model 1), AVX2, fp32, 2 threads` (the GPU's name instead of the CPU's on CUDA)."""
    if runtime.device.type == "cuda":
        return f"{gpu_name(runtime.device)}, {runtime.precision}"
    threads = f"{runtime.threads} thread{'s' if runtime.threads != 1 else ''}"
    return f"{cpu_name()}, {cpu_isa()}, {runtime.precision}, {threads}"


def train_net(settings: DepthSettings, net: str, seed: int, out: Path, test_images, test_labels) -> dict:
    config = net_config(settings, net, seed, out)
    run_dir = out / "runs" / run_name(net, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = TestErrorEachEpoch(test_images, test_labels, run_dir / "test_error_per_epoch.json")
    machines = MachineEachEpoch(run_dir / run_folder.MACHINES)
    trainer = Trainer(as_it_began(config, run_dir), run_dir, callbacks=[tracker, machines], resume_hint=AGAIN)
    continue_from_checkpoint(trainer)
    tracker.keep_first(trainer.position.epoch)
    machines.keep_first(trainer.position.epoch)
    results = trainer.fit()
    return {
        "net": net,
        "seed": seed,
        "epochs": trainer.epochs,
        "steps_per_epoch": trainer.steps_per_epoch,
        "train_error_per_epoch": [1 - row["train_acc"] for row in trainer.history],
        "test_error_per_epoch": tracker.errors,
        "test_error": tracker.errors[-1],
        "test_error_tta": 1 - results["top1"],
        "ece_before": results["calibration"]["test"]["ece_before"],
        "ece_after": results["calibration"]["test"]["ece_after"],
        "temperature": results["calibration"]["test"]["temperature"],
        "train_seconds": run_folder.training_seconds(trainer.history),
        "hours_by_machine": run_folder.hours_by_machine(
            machines.complete(trainer.history, where_it_runs(trainer.runtime))
        ),
        "run": str(run_dir),
        "precision": trainer.runtime.precision,
    }


def _fingerprint(settings: DepthSettings, net: str, seed: int) -> dict:
    """What a finished net's numbers depend on: its configuration, less where it ran and where it was written."""
    config = net_config(settings, net, seed, Path("."))
    skip = {"output_dir", "data_dir", "progress", "threads", "device"}
    return {key: value for key, value in json.loads(json.dumps(config.to_dict())).items() if key not in skip}


NET_RECORD = "experiment depth net"  # the ledger's record of one finished net


def _stored(out: Path, name: str) -> Path:
    return out / "nets" / f"{name}.json"


def recorded_nets(ledger_entries: list[dict]) -> dict[str, list[dict]]:
    """The finished nets the results ledger holds, by run name: each `{"config": ..., "result": ...}`, oldest first.
    A net's run folder lives on the machine that trained it; its record in the ledger travels with the repository,
    so a study spread over several machines (or a fresh clone) still has every net that finished anywhere."""
    nets: dict[str, list[dict]] = {}
    for entry in ledger_entries:
        if entry.get("benchmark") == NET_RECORD:
            result = entry["numbers"]["result"]
            nets.setdefault(run_name(result["net"], result["seed"]), []).append(entry["numbers"])
    return nets


def _matching(entries: list[dict], fingerprint: dict) -> dict | None:
    """The newest entry finished with this very configuration, else None."""
    return next((entry for entry in reversed(entries) if entry.get("config") == fingerprint), None)


def from_ledger(settings: DepthSettings, ledger_entries: list[dict]) -> dict:
    """The study as the ledger holds it, with no run folder: the nets finished anywhere with this very configuration
    (what the docs show while the study is under way)."""
    return _study(settings, _gather(settings, study_runs(settings), None, recorded_nets(ledger_entries)))


def _study(settings: DepthSettings, finished: dict[str, dict | None]) -> dict:
    nets = {name: result for name, result in finished.items() if result is not None}
    return {"settings": asdict(settings), "nets": nets, "missing": [name for name in finished if name not in nets]}


def _gather(
    settings: DepthSettings,
    runs: list,
    out: Path | None,
    recorded: dict,
    keep: Callable[[str, dict], None] = lambda name, entry: None,
) -> dict[str, dict | None]:
    """Each net's result where it is finished (in `out` or in the ledger), else None; `keep` gets the nets finished in
    `out` that the ledger does not hold yet."""
    finished: dict[str, dict | None] = {}
    for net, seed in runs:
        name, fingerprint = run_name(net, seed), _fingerprint(settings, net, seed)
        path = None if out is None else _stored(out, name)
        here = _matching([json.loads(path.read_text())] if path and path.is_file() else [], fingerprint)
        elsewhere = _matching(recorded.get(name, []), fingerprint)
        if here is not None and here != elsewhere:
            keep(name, here)
        finished[name] = (here or elsewhere or {}).get("result")
    return finished


def run_depth(
    settings: DepthSettings,
    out: Path,
    *,
    train: bool = True,
    log: Callable[[str], None] = print,
    recorded: dict[str, list[dict]] | None = None,
    keep: Callable[[str, dict], None] | None = None,
) -> dict:
    """Train every net of the study not yet finished (unless `train` is False) and gather the finished ones: those in
    `out` and those `recorded` in the ledger (`recorded_nets`). `keep(name, entry)` is called for every net finished
    in `out` that the ledger does not hold yet, the moment it is known (the command appends it to the ledger).

    A net that another process is training in `out` (its folder is locked) is left to it: the same command started
    twice on one `--out`, one thread each, trains two nets at once on two cores."""
    settings.validate()
    recorded, keep = recorded or {}, keep or (lambda name, entry: None)
    runs = study_runs(settings)
    finished = _gather(settings, runs, out, recorded, keep)
    todo = [(net, seed) for net, seed in runs if finished[run_name(net, seed)] is None]
    if train and todo:
        from resnet_cifar.data.locate import load_test_sample

        images, labels = load_test_sample(settings.data_dir, settings.test_images)
        counter = NetProgress(len(runs), log)
        for _ in range(len(runs) - len(todo)):
            counter.skip()
        for net, seed in todo:
            name = run_name(net, seed)
            try:
                lock = held(out / "runs" / name).acquire()
            except ConfigError:
                counter.skip()
                log(f"{name}: another process is training it; on to the next net")
                continue
            try:
                if _gather(settings, [(net, seed)], out, {})[name] is not None:
                    continue  # finished by another process since this one began
                counter.start(name)
                started = time.perf_counter()
                result = train_net(settings, net, seed, out, images, labels)
                result["wall_seconds"] = time.perf_counter() - started
                entry = {"config": _fingerprint(settings, net, seed), "result": result}
                _stored(out, name).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(_stored(out, name), json.dumps(entry).encode())  # before another process may look
            finally:
                lock.release()
            counter.done()
            keep(name, json.loads(json.dumps(entry)))
            finished[name] = result
            log(f"{name}: test error {result['test_error']:.2%} ({result['train_seconds'] / 3600:.2f} h)")
        finished = _gather(settings, runs, out, recorded)  # with what other processes finished meanwhile
    return _study(settings, finished)


def _depth(net: str) -> int:
    return int(net.lstrip("abcdefghijklmnopqrstuvwxyz"))


def table6(results: dict) -> list[dict]:
    """One row per residual depth: the test error (single view and flip TTA), mean and std over the seeds run."""
    by_depth: dict[int, list[dict]] = {}
    for result in results["nets"].values():
        if result["net"].startswith("resnet"):
            by_depth.setdefault(_depth(result["net"]), []).append(result)
    rows = []
    for depth, nets in sorted(by_depth.items()):
        single = [100 * net["test_error"] for net in nets]
        tta = [100 * net["test_error_tta"] for net in nets]
        rows.append(
            {
                "net": f"resnet{depth}",
                "seeds": sorted(net["seed"] for net in nets),
                "test_error": statistics.mean(single),
                "test_error_std": statistics.stdev(single) if len(single) > 1 else None,
                "test_error_tta": statistics.mean(tta),
                "test_error_tta_std": statistics.stdev(tta) if len(tta) > 1 else None,
                "epochs": nets[0]["epochs"],
                "cpu_hours": statistics.mean(net["train_seconds"] for net in nets) / 3600,
                **{source: errors.get(depth) for source, errors in ANCHORS.items()},
                "trained_on": sorted({machine for net in nets for machine in net.get("hours_by_machine", {})}),
            }
        )
    return rows


def thesis(results: dict) -> dict:
    """The seed's claim, measured (He et al. Table 6 and Fig. 6): the ResNets' test error (single view, mean over
    seeds) falls with every step of depth, and the plain nets' final training error rises with it. A verdict is None
    until two depths of its kind have finished."""

    def by_depth(kind: str, error) -> dict[int, float]:
        errors: dict[int, list[float]] = {}
        for net in results["nets"].values():
            if net["net"].startswith(kind):
                errors.setdefault(_depth(net["net"]), []).append(100 * error(net))
        return {depth: statistics.mean(values) for depth, values in sorted(errors.items())}

    def verdict(errors: dict[int, float], sign: int) -> bool | None:
        values = list(errors.values())
        return None if len(values) < 2 else all(sign * (b - a) > 0 for a, b in itertools.pairwise(values))

    resnet = by_depth("resnet", lambda net: net["test_error"])
    plain = by_depth("plain", lambda net: net["train_error_per_epoch"][-1])
    return {
        "resnet_test_error": resnet,
        "resnet_test_error_falls_with_depth": verdict(resnet, -1),
        "plain_train_error": plain,
        "plain_train_error_rises_with_depth": verdict(plain, +1),
    }


# the seed's two claims: what each says, and the keys of `thesis()` holding its errors and its verdict
CLAIMS = (
    ("ResNets' test error falls with depth", "resnet_test_error", "resnet_test_error_falls_with_depth"),
    ("plain nets' training error rises with depth", "plain_train_error", "plain_train_error_rises_with_depth"),
)


def thesis_lines(measured: dict) -> list[str]:
    """The verdicts in words, each with the errors it rests on."""

    def line(errors: dict, what: str, holds: bool | None) -> str:
        if not errors:
            return f"{what}: not yet measured (no net finished)"
        steps = " → ".join(f"{float(error):.2f}" for error in errors.values())
        depths = "/".join(str(depth) for depth in errors)
        answer = {True: "yes", False: "no", None: "not yet measured (fewer than two depths)"}[holds]
        return f"{what} ({depths}): {steps}%: {answer}"

    return [line(measured[errors], what, measured[holds]) for what, errors, holds in CLAIMS]


def _error(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def table6_lines(results: dict) -> list[str]:
    """Table 6 as Markdown, from a study's results or from the rows it recorded (`{"table6": rows}`)."""
    sources = list(ANCHORS)
    lines = [
        "| net | seeds | test error % (single view) | flip TTA | epochs | hours each | "
        + " | ".join(f"{source} %" for source in sources)
        + " | trained on |",
        "| --- | --- | ---: | ---: | ---: | ---: |" + " ---: |" * len(sources) + " --- |",
    ]
    for row in results.get("table6") or table6(results):
        anchors = " | ".join("–" if row[s] is None else f"{row[s]:.2f}" for s in sources)
        lines.append(
            f"| {row['net']} | {', '.join(map(str, row['seeds']))} "
            f"| {_error(row['test_error'], row['test_error_std'])} "
            f"| {_error(row['test_error_tta'], row.get('test_error_tta_std'))} "
            f"| {row['epochs']} | {row['cpu_hours']:.2f} | {anchors} "
            f"| {'; '.join(row.get('trained_on', [])) or '–'} |"
        )
    return lines


def write_depth(results: dict, out: Path) -> list[Path]:
    from resnet_cifar.viz.experiments import plot_figure6

    return write_report(
        out,
        "depth.json",
        results,
        "nets",
        extra={"table6.json": table6(results)},
        pictures={"figure6.png": plot_figure6},
    )
