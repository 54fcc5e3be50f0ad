"""Write all pictures of a run folder (end of training, and `resnet-cifar plot`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from resnet_cifar.evaluate.metrics import confusion_matrix
from resnet_cifar.run_folder import read_metrics
from resnet_cifar.viz.pictures import confusion_picture, inference_grid, training_curves


def write_run_pictures(
    run_dir: Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    logits: torch.Tensor,
    *,
    seed: int = 0,
    publish_to: Path | None = None,
    label_smoothing: float = 0.0,
    which: str = "",
) -> list[Path]:
    """inference.png, curves.png (when metrics.csv exists) and confusion_matrix.png in `run_dir`.

    `publish_to` also receives a copy of inference.png (the default run's `outputs/inference.png`); `which` names
    the weights and test-time augmentation behind `logits` (the confusion matrix's title).
    """

    written = [inference_grid(images, labels, logits, run_dir / "inference.png", seed=seed)]
    rows = read_metrics(run_dir)
    if rows:
        written.append(training_curves(rows, run_dir / "curves.png", run_dir.name, label_smoothing))
    confusion = confusion_matrix(logits.argmax(1), labels, logits.shape[1])
    written.append(confusion_picture(confusion, run_dir / "confusion_matrix.png", which))
    if publish_to is not None:
        publish_to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "inference.png", publish_to)
        written.append(publish_to)
    return written


TTA_NAMES = {0: "no TTA", 1: "flip TTA", 2: "flip + translate TTA"}


def describe_predictions(weights: str, tta: int, ema: bool = False) -> str:
    """e.g. `last weights (EMA), flip TTA`: which predictions a picture shows."""
    return f"{weights} weights{' (EMA)' if ema else ''}, {TTA_NAMES.get(tta, f'TTA {tta}')}"
