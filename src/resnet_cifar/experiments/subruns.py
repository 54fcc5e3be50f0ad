"""The training runs inside an experiment: each is continued, not restarted, when the experiment is run again after an
interruption (Ctrl-C writes the sub-run's checkpoint; the experiment's finished parts are files of their own)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import load_checkpoint, recorded_precision
from resnet_cifar.config import TrainConfig
from resnet_cifar.train.loop import Trainer
from resnet_cifar.train.session import RUNTIME_KEYS


def _what_it_computes(config: dict) -> dict:
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in RUNTIME_KEYS}))


def held(run_dir: Path) -> run_folder.RunLock:
    """The sub-run's folder, held while it trains: the same experiment started twice on one --out never trains one
    sub-run twice into one folder (the degradation and data-efficiency studies stop in one line at the first sub-run
    the other is training; the depth study leaves that net to it and goes on with the next)."""
    return run_folder.RunLock(run_dir, instead="give this experiment another --out")


def as_it_began(config: TrainConfig, run_dir: Path) -> TrainConfig:
    """The sub-run's configuration with `bf16: auto` replaced by the precision its checkpoint records. The precision
    was decided once, when the sub-run started; resolved again on a machine of another kind, `auto` could choose the
    other one, and the sub-run would start afresh instead of going on (build the Trainer from this config)."""
    path = run_folder.checkpoint_path(run_dir)
    if config.bf16 != "auto" or not path.is_file():
        return config
    recorded = recorded_precision(load_checkpoint(path)[1])
    return config if recorded is None else dataclasses.replace(config, bf16=recorded)


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
