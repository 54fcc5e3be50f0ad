"""What a training checkpoint holds beyond the weights: where the run is (Position), the optimizer's momentum, the
moving average and the random state, packed into flat safetensors tensors and JSON metadata, and back."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import clean_state_dict, split_prefix
from resnet_cifar.config import TrainConfig
from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.data.normalization import CIFAR10
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
            epoch=epoch,
            step=step,
            lr=lr,
            train_loss=self.loss_sum / max(self.count, 1),
            train_acc=self.correct / max(self.count, 1),
            seconds=self.seconds,
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
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "step": self.step,
            "best_val_acc": self.best_val_acc,
            "best_epoch": self.best_epoch,
            "epoch_totals": self.totals.as_dict(),
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
    tensors: dict[str, torch.Tensor],
    model: nn.Module,
    ema: nn.Module | None,
    optimizer: torch.optim.Optimizer,
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


def checkpoint_metadata(
    config: TrainConfig,
    position: Position,
    *,
    total_steps: int,
    steps_per_epoch: int,
    world_size: int,
    lr: float,
    schedule_kind: str,
    ema_weights: bool,
    data_folder: Path,
    runtime: Runtime,
) -> dict:
    """The JSON half of a checkpoint: the config, the position, and what a reader needs to use or judge the weights."""
    return {
        "config": config.to_dict(),
        "model": config.model,
        "model_options": config.model_options,
        **position.as_metadata(),
        "total_steps": total_steps,
        "steps_per_epoch": steps_per_epoch,
        "global_batch": config.batch_size,
        "world_size": world_size,
        "optimizer": {
            "name": config.optimizer,
            "lr": lr,
            "momentum": config.momentum,
            "nesterov": config.nesterov,
            "weight_decay": config.weight_decay,
            "bias_lr_scale": config.bias_lr_scale,
            **(
                {"muon_lr": config.muon_lr, "muon_momentum": config.muon_momentum} if config.optimizer == "muon" else {}
            ),
        },
        "schedule": {"kind": schedule_kind, "step": position.step, "total_steps": total_steps},
        "ema": ema_weights,
        "classes": list(CLASSES),
        "normalization": CIFAR10.as_dict(),  # what training fed the model (resnet_cifar.data.normalization)
        "data_folder": str(data_folder.resolve()),
        # where it ran; the precision is the config's resolved `bf16`, stored there once (recorded_precision reads it)
        "runtime": {key: value for key, value in runtime.as_dict().items() if key != "precision"},
        "torch_version": torch.__version__,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
