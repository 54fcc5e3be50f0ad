"""What a training checkpoint holds beyond the weights: where the run is (Position), the optimizer's momentum, the
moving average and the random state, packed into flat safetensors tensors and JSON metadata, and back."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import clean_state_dict, load_checkpoint, save_checkpoint, split_prefix
from resnet_cifar.config import TrainConfig
from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.data.normalization import CIFAR10
from resnet_cifar.errors import CheckpointError
from resnet_cifar.runtime import Runtime


@dataclass
class EpochTotals:
    """Running sums of the epoch in progress (kept in checkpoints so a resumed epoch reports the same numbers)."""

    loss_sum: float = 0.0
    correct: int = 0
    count: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def row(self, epoch: int, step: int, lr: float) -> dict:
        """The epoch's metrics.csv row, validation columns empty."""
        return run_folder.metrics_row(
            epoch=epoch, step=step, lr=lr, train_loss=self.loss_sum / max(self.count, 1),
            train_acc=self.correct / max(self.count, 1), seconds=self.seconds,
            images_per_s=self.count / max(self.seconds, 1e-9),
        )


@dataclass
class Position:
    epoch: int = 0  # 0-based index of the epoch in progress (= completed epochs at an epoch boundary)
    epoch_step: int = 0  # steps done inside that epoch
    step: int = 0  # global optimizer steps done
    best_val_acc: float = -1.0
    best_epoch: int = 0
    totals: EpochTotals = field(default_factory=EpochTotals)

    def as_metadata(self) -> dict:
        return {
            "epoch": self.epoch, "epoch_step": self.epoch_step, "step": self.step, "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch, "epoch_totals": self.totals.as_dict(),
        }

    @classmethod
    def from_metadata(cls, meta: dict) -> Position:
        totals = EpochTotals(**meta["epoch_totals"])
        return cls(meta["epoch"], meta["epoch_step"], meta["step"], meta["best_val_acc"], meta["best_epoch"], totals)


def pack_state(model: nn.Module, ema: nn.Module | None, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """`model.*` weights, `ema.*` (when on), `optimizer.momentum.<i>` per parameter, and the torch RNG state."""
    tensors = {f"model.{k}": v for k, v in clean_state_dict(model.state_dict()).items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v for k, v in clean_state_dict(ema.state_dict()).items()})
    for index, parameter in enumerate(model.parameters()):
        buffer = optimizer.state.get(parameter, {}).get("momentum_buffer")
        if buffer is not None:
            tensors[f"optimizer.momentum.{index}"] = buffer
    tensors["rng.torch"] = torch.get_rng_state()
    return tensors


def unpack_state(
    tensors: dict[str, torch.Tensor], model: nn.Module, ema: nn.Module | None, optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> None:
    """The inverse of `pack_state`, in place."""
    model.load_state_dict(split_prefix(tensors, "model"))
    if ema is not None:
        ema.load_state_dict(split_prefix(tensors, "ema"))
    for index, parameter in enumerate(model.parameters()):
        key = f"optimizer.momentum.{index}"
        if key in tensors:
            optimizer.state[parameter]["momentum_buffer"] = tensors[key].to(device)
    torch.set_rng_state(tensors["rng.torch"])


def checkpoint_metadata(config: TrainConfig, position: Position, parts, runtime: Runtime, world_size: int) -> dict:
    """The JSON half of a checkpoint: the config (the precision as requested), the position, the runtime (the
    precision the run computes in, stored here once), and what a reader needs to use or judge the weights."""
    optimizer = {
        "name": config.optimizer, "lr": parts.schedule(position.step), "momentum": config.momentum,
        "nesterov": config.nesterov, "weight_decay": config.weight_decay, "bias_lr_scale": config.bias_lr_scale,
    }
    if config.optimizer == "muon":
        optimizer |= {"muon_lr": config.muon_lr, "muon_momentum": config.muon_momentum}
    return {
        "config": config.to_dict(),
        "model": config.model,
        "model_options": config.model_options,
        **position.as_metadata(),
        "total_steps": parts.total_steps,
        "steps_per_epoch": parts.steps_per_epoch,
        "global_batch": config.batch_size,
        "world_size": world_size,
        "optimizer": optimizer,
        "schedule": {"kind": parts.schedule.kind, "step": position.step, "total_steps": parts.total_steps},
        "ema": parts.ema is not None,
        "classes": list(CLASSES),
        "normalization": CIFAR10.as_dict(),  # what training fed the model (resnet_cifar.data.normalization)
        "data_folder": str(parts.data.folder.resolve()),
        "runtime": runtime.as_dict(),
        "torch_version": torch.__version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def save_state(path: Path, config: TrainConfig, position: Position, parts, runtime: Runtime, **extra) -> None:
    """The run's whole state as a checkpoint at `path` (`extra`: world_size, and the calibration once fitted)."""
    metadata = checkpoint_metadata(config, position, parts, runtime, extra.pop("world_size", 1))
    metadata.update({key: value for key, value in extra.items() if value is not None})
    save_checkpoint(path, pack_state(parts.model, parts.ema, parts.optimizer), metadata)


def restore_state(path: Path, config: TrainConfig, parts, device: torch.device) -> tuple[Position, dict | None]:
    """Everything needed to continue exactly where the checkpoint was written, restored into `parts`; returns the
    position and the calibration the checkpoint holds."""
    tensors, meta = load_checkpoint(path)
    if not meta:
        raise CheckpointError(f"{path} holds weights only, no training state to resume from")
    if meta["global_batch"] != config.batch_size or meta["total_steps"] != parts.total_steps:
        raise CheckpointError(f"{path} was written for a different batch size or length of training")
    unpack_state(tensors, parts.model, parts.ema, parts.optimizer, device)
    return Position.from_metadata(meta), meta.get("calibration")
