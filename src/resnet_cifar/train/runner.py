"""Start or resume a training run: pick the run folder, set up distribution, run the Trainer."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from resnet_cifar.errors import ConfigError
from resnet_cifar.runtime import resolve_device
from resnet_cifar.train import distributed
from resnet_cifar.train.checkpoint import load_checkpoint
from resnet_cifar.train.config import TrainConfig, apply_overrides, validate
from resnet_cifar.train.loop import Interrupted, Trainer

# Keys that may change when resuming, because they change where and how fast the computation runs, or its rounding
# (precision, micro-batches), not what it computes.
RUNTIME_KEYS = (
    "threads",
    "device",
    "bf16",
    "accumulate",
    "progress",
    "data_dir",
    "download",
    "compile",
    "plots",
    "stop_after_epochs",
)


def new_run_dir(config: TrainConfig, overwrite: bool = False) -> Path:
    """output_dir/name, with -2, -3, ... appended rather than overwriting an existing run (unless asked)."""
    base = Path(config.output_dir) / (config.name or config.model)
    if overwrite or not base.exists():
        return base
    suffix = 2
    while (candidate := base.with_name(f"{base.name}-{suffix}")).exists():
        suffix += 1
    return candidate


def resume_config(run_dir: Path, overrides: dict) -> TrainConfig:
    _, metadata = load_checkpoint(run_dir / "last.safetensors")
    if not metadata:
        raise ConfigError(f"{run_dir / 'last.safetensors'} has no training state")
    config = apply_overrides(TrainConfig(), metadata["config"])
    changed = {k: v for k, v in overrides.items() if getattr(config, k.replace("-", "_")) != v}
    fixed = sorted(k for k in changed if k.replace("-", "_") not in RUNTIME_KEYS)
    if fixed:
        raise ConfigError(f"cannot change {', '.join(fixed)} when resuming (only {', '.join(RUNTIME_KEYS)})")
    return validate(apply_overrides(config, changed))


_KEPT_UNTIL_EXIT: list = []


def run_training(config: TrainConfig, *, resume: Path | None = None, overwrite: bool = False) -> dict:
    """Train (or resume) and return the test results; raises Interrupted after a signal (checkpoint written)."""
    info = distributed.init_distributed(resolve_device(config.device).type)
    try:
        if info.enabled and config.device in ("auto", "cuda") and resolve_device(config.device).type == "cuda":
            config = dataclasses.replace(config, device=f"cuda:{info.local_rank}")
        run_dir = Path(resume) if resume else new_run_dir(config, overwrite)
        if info.enabled:  # every rank must use rank 0's folder
            run_dir = Path(_broadcast_text(str(run_dir), info))
        trainer = Trainer(config, run_dir, info)
        if info.enabled:  # freed only at process exit: see cli._exit_without_teardown
            _KEPT_UNTIL_EXIT.append(trainer)
        if resume:
            trainer.load(run_dir / "last.safetensors")
        return trainer.fit()
    finally:
        distributed.shutdown(info)


def _broadcast_text(text: str, info: distributed.DistInfo) -> str:
    import torch.distributed as dist

    holder = [text]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def exit_code_for(error: Interrupted) -> int:
    return 128 + int(error.signum)


def print_final_line(results: dict) -> None:
    if results:
        print(f"test_accuracy={results['top1']:.4f}", flush=True)
        sys.stdout.flush()
