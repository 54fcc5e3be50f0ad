"""Batched inference on uint8 images with test-time augmentation (TTA): the core that training, evaluation,
prediction and the pictures share.

TTA levels: 0 the image as is; 1 the mean of the logits of the image and its mirror; 2 level 1 at three positions
(as is, and shifted by one pixel up-left and down-right with reflected borders): six views in all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.data.normalization import CIFAR10, Normalization, normalize
from resnet_cifar.runtime import Runtime, choose_runtime

TTA_LEVELS = (0, 1, 2)


def _shift(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate by (dy, dx) pixels, filling the border by reflection."""
    pad = max(abs(dy), abs(dx))
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    h, w = images.shape[-2:]
    return padded[..., pad - dy : pad - dy + h, pad - dx : pad - dx + w]


def tta_views(images: torch.Tensor, level: int) -> list[torch.Tensor]:
    """The views averaged at a TTA level, for a normalised float batch."""
    if level not in TTA_LEVELS:
        raise ValueError(f"TTA level must be one of {TTA_LEVELS}, got {level}")
    positions = [images] if level < 2 else [images, _shift(images, 1, 1), _shift(images, -1, -1)]
    if level == 0:
        return positions
    return [view for position in positions for view in (position, position.flip(3))]


def model_device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def predict_logits(model: nn.Module, images: torch.Tensor, **options) -> torch.Tensor:
    """float32 logits (N x classes, on the CPU) of uint8 images N x 3 x 32 x 32, in eval mode, averaged over TTA views.

    Options, as `predict_logits_and_plain` takes them: `tta` (level, default 0), `batch_size`; `runtime`: where and
    in what precision (default: chosen for the device the model is on, as `choose_runtime` does); `channels_last`:
    feed channels-last batches (as the run was trained and tested, for identical rounding); `normalization`: the
    statistics the weights were trained with (LoadedModel.normalization).
    """
    return predict_logits_and_plain(model, images, **options)[0]


def predict_logits_and_plain(
    model: nn.Module,
    images: torch.Tensor,
    *,
    tta: int = 0,
    batch_size: int = 1000,
    runtime: Runtime | None = None,
    channels_last: bool = False,
    normalization: Normalization = CIFAR10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`predict_logits` and, from the same pass, the logits of the image as is (TTA level 0, bit for bit): the
    first view of every level, so a caller that needs both pays for the views once."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    runtime = runtime or choose_runtime(model_device(model))
    was_training = model.training
    model.eval()
    averaged, plain = [], []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = normalize(images[start : start + batch_size], normalization=normalization).to(runtime.device)
                views = tta_views(batch, tta)
                total = None
                for view in views:
                    if channels_last:
                        view = view.contiguous(memory_format=torch.channels_last)
                    with runtime.autocast():
                        logits = model(view).float()
                    if total is None:
                        plain.append(logits.cpu())
                    total = logits if total is None else total + logits
                averaged.append((total / len(views)).cpu())
    finally:
        model.train(was_training)
    if not averaged:
        return torch.empty(0, 0), torch.empty(0, 0)
    return torch.cat(averaged), torch.cat(plain)
