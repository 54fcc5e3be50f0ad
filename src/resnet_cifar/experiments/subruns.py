"""The training runs inside an experiment: each is continued, not restarted, when the experiment is run again after an
interruption (Ctrl-C writes the sub-run's checkpoint; the experiment's finished parts are files of their own)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import load_checkpoint, recorded_precision
from resnet_cifar.config import RUNTIME_KEYS, TrainConfig
from resnet_cifar.runtime import Runtime, choose_precision, choose_runtime
from resnet_cifar.train.loop import Trainer


def experiment_runtime(recipe: TrainConfig, threads: int = 0) -> Runtime:
    """The runtime an experiment's sub-runs compute in, decided once at its start from its recipe's request."""
    return choose_runtime(recipe.device, recipe.precision, threads)


def _what_it_computes(config: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in (*RUNTIME_KEYS, "precision")}))


def held(run_dir: Path) -> run_folder.RunLock:
    """The sub-run's folder, held while it trains: the same experiment started twice on one --out never trains one
    sub-run twice into one folder (the degradation and data-efficiency studies stop in one line at the first sub-run
    the other is training; the depth study leaves that net to it and goes on with the next)."""
    return run_folder.RunLock(run_dir, instead="give this experiment another --out")


def as_it_began(runtime: Runtime, run_dir: Path) -> Runtime:
    """The experiment's runtime, in the precision the sub-run's checkpoint records where it has one: that was decided
    when the sub-run started, and a sub-run continued on a machine of another kind goes on in it (otherwise it
    would start afresh instead of going on)."""
    path = run_folder.checkpoint_path(run_dir)
    recorded = recorded_precision(load_checkpoint(path)[1]) if path.is_file() else None
    if recorded is None or recorded == runtime.precision:
        return runtime
    precision, reason = choose_precision(runtime.device, recorded, given="as the sub-run began")
    return dataclasses.replace(runtime, precision=precision, reason=reason)


def continue_from_checkpoint(trainer: Trainer) -> bool:
    """Load the checkpoint an interrupted experiment left in this sub-run's folder, when it was written for the same
    configuration (else the sub-run starts afresh). True when training continues from it."""
    path = run_folder.checkpoint_path(trainer.run_dir)
    if not path.is_file():
        return False
    _, metadata = load_checkpoint(path)
    if _what_it_computes(metadata.get("config", {})) != _what_it_computes(trainer.config.to_dict()):
        return False
    trainer.load(path)
    return True
