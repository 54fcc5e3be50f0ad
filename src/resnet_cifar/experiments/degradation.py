"""The degradation problem (He et al. 2015, Fig. 6): plain nets get worse with depth, residual nets do not. Plain and
residual 20/32/44/56 train with one recipe and budget; training error (running) and test error (each epoch) are
recorded, then the training error once more cleanly (eval mode, no augmentation, a fixed sample)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from resnet_cifar.config import load_config
from resnet_cifar.data.splits import balanced_subset
from resnet_cifar.evaluate.metrics import accuracy
from resnet_cifar.experiments.settings import DegradationSettings
from resnet_cifar.experiments.study_reports import AGAIN, NetProgress, write_report
from resnet_cifar.experiments.subruns import as_it_began, continue_from_checkpoint, held
from resnet_cifar.files import atomic_write_bytes
from resnet_cifar.runtime import Runtime
from resnet_cifar.train.loop import Callback, Trainer


class TestErrorEachEpoch(Callback):
    """The test error after every epoch, kept in `path` as it grows (so a continued sub-run keeps its first epochs)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, path: Path):
        self.images, self.labels, self.path = images, labels, path
        self.errors: list[float] = json.loads(path.read_text()) if path.is_file() else []

    def keep_first(self, epochs: int) -> None:
        self.errors = self.errors[:epochs]

    def on_epoch_end(self, trainer, row):
        logits = trainer.predict(self.images, tta=0)
        self.errors.append(1 - accuracy(logits, self.labels))
        atomic_write_bytes(self.path, json.dumps(self.errors).encode())


def net_config(net: str, settings: DegradationSettings, out: Path):
    """The training config of one net of the study: the shared recipe (milestones given as fractions of the budget
    expressed in epochs), the budget and the data."""
    recipe = dict(settings.recipe)
    if recipe.get("milestone_unit") == "fraction":
        recipe["milestones"] = [m * settings.epochs for m in recipe["milestones"]]
        recipe["milestone_unit"] = "epoch"
    return load_config(
        None,
        {
            **recipe,
            "model": net,
            "epochs": settings.epochs,
            "train_size": settings.train_size,
            "val_size": settings.val_size,
            "seed": settings.seed,
            "data_dir": settings.data_dir,
            "name": net,
            "output_dir": str(out / "runs"),
            "eval_every": 10_000,
            "checkpoint_every": 10_000,
            "test_at_end": False,
            "plots": False,
            "progress": "auto",  # a bar on a terminal, lines (with the net's ETA) in a log
        },
    )


def train_one(net: str, settings: DegradationSettings, out: Path, test_images, test_labels, runtime) -> dict:
    config = net_config(net, settings, out)
    run_dir = out / "runs" / net
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = TestErrorEachEpoch(test_images, test_labels, run_dir / "test_error_per_epoch.json")
    trainer = Trainer(config, run_dir, as_it_began(runtime, run_dir), callbacks=[tracker], resume_hint=AGAIN)
    started = time.perf_counter()
    continue_from_checkpoint(trainer)  # an interrupted net goes on where it stopped, with its per-epoch test errors
    tracker.keep_first(trainer.position.epoch)
    trainer.fit()
    sample = balanced_subset(trainer.data.train_labels, settings.clean_train_sample, settings.seed)
    logits = trainer.predict(trainer.data.train_images[sample], tta=0)
    clean_train_error = 1 - accuracy(logits, trainer.data.train_labels[sample])
    return {
        "train_error_per_epoch": [1 - row["train_acc"] for row in trainer.history],
        "test_error_per_epoch": tracker.errors, "train_error": clean_train_error, "test_error": tracker.errors[-1],
        "seconds": time.perf_counter() - started,
    }


def run_degradation(
    settings: DegradationSettings, out: Path, runtime: Runtime, log: Callable[[str], None] = print
) -> dict:
    from resnet_cifar.data.locate import load_test_sample

    test_images, test_labels = load_test_sample(settings.data_dir, settings.test_images, settings.seed)
    nets = {}
    fingerprint = {k: v for k, v in json.loads(json.dumps(asdict(settings))).items() if k != "data_dir"}
    names = [f"{kind}{depth}" for kind in ("plain", "resnet") for depth in settings.depths]
    counter = NetProgress(len(names), log)
    for name in names:
        done = out / "nets" / f"{name}.json"  # a finished net is not trained again when the study is rerun
        stored = json.loads(done.read_text()) if done.is_file() else {}
        if stored.get("settings") == fingerprint:
            nets[name] = stored["result"]
            counter.skip()
            continue
        counter.start(f"{name}: {settings.epochs:g} epochs of {settings.train_size:,} images")
        with held(out / "runs" / name):
            nets[name] = train_one(name, settings, out, test_images, test_labels, runtime)
        counter.done()
        done.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(done, json.dumps({"settings": fingerprint, "result": nets[name]}).encode())
        log(
            f"{name:<9} train error {nets[name]['train_error']:.4f}  test error {nets[name]['test_error']:.4f}  "
            f"({nets[name]['seconds']:.0f}s)"
        )
    total = sum(net["seconds"] for net in nets.values())
    return {"settings": asdict(settings), "precision": runtime.precision, "nets": nets, "total_seconds": total}


def table(results: dict) -> dict:
    """{net: {"train_error": ..., "test_error": ...}}"""
    return {
        net: {"train_error": round(r["train_error"], 4), "test_error": round(r["test_error"], 4)}
        for net, r in results["nets"].items()
    }


def table_lines(results: dict) -> list[str]:
    lines = ["| net | final training error | final test error |", "| --- | ---: | ---: |"]
    for net, row in table(results).items():
        lines.append(f"| {net} | {row['train_error']:.2%} | {row['test_error']:.2%} |")
    return lines


def write_degradation(results: dict, out: Path) -> list[Path]:
    from resnet_cifar.viz.study_plots import plot_degradation

    return write_report(
        out, "degradation_curves.json", results, "nets", extra={"degradation.json": table(results)},
        pictures={"degradation.png": plot_degradation},
    )
