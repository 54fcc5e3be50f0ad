"""Validation during training, and the calibration fitted on it after the last epoch: the temperature that every later
use of the weights divides their logits by (kept in the final checkpoint)."""

from __future__ import annotations

import time

import torch.nn.functional as F
from torch import nn

from resnet_cifar.evaluate.evaluation import TestSetting
from resnet_cifar.inference.calibration import temperature_calibration
from resnet_cifar.inference.tta import predict_logits_and_single_view
from resnet_cifar.runtime import Runtime
from resnet_cifar.train.batches import TrainingData


def validate(model: nn.Module, data: TrainingData, setting: TestSetting, runtime: Runtime, row: dict,
             calibrate: bool) -> dict | None:  # fmt: skip
    """Fill the metrics row's validation columns (single view). With `calibrate`, the same pass also gives the run's
    TTA views (what evaluate and predict use), and the temperature is fitted on them: its calibration record."""
    started = time.perf_counter()
    tta_logits, logits = predict_logits_and_single_view(
        model, data.val_images, tta=setting.tta if calibrate else 0, batch_size=setting.batch_size, runtime=runtime,
        channels_last=setting.channels_last, tta_share=setting.tta_share,
    )
    labels = data.val_labels
    row["val_loss"] = F.cross_entropy(logits, labels).item()
    row["val_acc"] = (logits.argmax(1) == labels).double().mean().item()
    row["val_seconds"] = time.perf_counter() - started
    return temperature_calibration(tta_logits, labels, setting.tta) if calibrate else None
