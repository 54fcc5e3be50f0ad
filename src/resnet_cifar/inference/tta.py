"""Batched inference on uint8 images with test-time augmentation: level 0 the image, 1 the mean with its mirror, 2 that
at three positions (as is, one pixel up-left and down-right): six views. `tta_share` < 1 gives the views only to that
share of the images, least confident first; a confident single view is rarely changed by averaging."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.choices import TTA_LEVELS
from resnet_cifar.data.normalization import CIFAR10, Normalization, normalize
from resnet_cifar.runtime import Runtime, choose_runtime


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


def view_count(level: int) -> int:
    """How many views a TTA level averages: 1, 2 or 6."""
    if level not in TTA_LEVELS:
        raise ValueError(f"TTA level must be one of {TTA_LEVELS}, got {level}")
    return (2 if level else 1) * (3 if level == 2 else 1)


def model_device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def predict_logits(model: nn.Module, images: torch.Tensor, **options) -> torch.Tensor:
    """float32 logits (N x classes, on the CPU) of uint8 images N x 3 x 32 x 32, in eval mode, averaged over TTA views.

    Options, as `predict_logits_and_single_view` takes them: `tta` (level, default 0), `batch_size`; `runtime`: where
    and in what precision (default: chosen for the device the model is on, as `choose_runtime` does); `channels_last`:
    feed channels-last batches (as the run was trained and tested, for identical rounding); `normalization`: the
    statistics the weights were trained with (LoadedModel.normalization).
    """
    return predict_logits_and_single_view(model, images, **options)[0]


def predict_logits_and_single_view(
    model: nn.Module, images: torch.Tensor, *, tta: int = 0, batch_size: int = 1000, runtime: Runtime | None = None,
    channels_last: bool = False, normalization: Normalization = CIFAR10, tta_share: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`predict_logits` and, from the same pass, the logits of the image as is (TTA level 0, bit for bit): the
    first view of every level, so a caller that needs both pays for the views once. `tta_share` in (0, 1]: the
    share of the images (least confident as is first) that get the level's views; the others keep their single
    view."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not 0 < tta_share <= 1:
        raise ValueError(f"tta_share must be in (0, 1], got {tta_share}")
    runtime = runtime or choose_runtime(model_device(model))
    was_training = model.training
    model.eval()
    passes = _Passes(model, runtime, channels_last, normalization, batch_size)
    try:
        with torch.no_grad():
            if tta == 0 or tta_share == 1:
                return passes.mean_over_views(images, tta)
            single_view = passes.mean_over_views(images, 0)[0]
            chosen = least_confident(single_view, tta_share)
            others = passes.mean_over_views(images[chosen], tta, skip_first=True)[0]  # the views but the first
            views = view_count(tta)
            tta_logits = single_view.clone()
            tta_logits[chosen] = (single_view[chosen] + others * (views - 1)) / views
            return tta_logits, single_view
    finally:
        model.train(was_training)


def least_confident(logits: torch.Tensor, share: float) -> torch.Tensor:
    """Indices of the `share` of rows whose top softmax probability is lowest (at least one row; ties by index)."""
    count = max(1, round(share * len(logits)))
    confidence = logits.softmax(dim=1).amax(dim=1)
    return torch.sort(torch.argsort(confidence, stable=True)[:count]).values


class _Passes:
    """Batched forward passes of one model under one runtime, format and normalisation."""

    def __init__(self, model, runtime, channels_last, normalization, batch_size):
        self.model, self.runtime, self.channels_last = model, runtime, channels_last
        self.normalization, self.batch_size = normalization, batch_size

    def mean_over_views(
        self, images: torch.Tensor, tta: int, *, skip_first: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean float32 logits over the level's views, the first view's logits); `skip_first` leaves the first view
        (the image as is) out of the mean, and the second part empty."""
        tta_logits, single_view = [], []
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            batch = normalize(batch, normalization=self.normalization).to(self.runtime.device)
            views = tta_views(batch, tta)[1 if skip_first else 0 :]
            total = None
            for view in views:
                if self.channels_last:
                    view = view.contiguous(memory_format=torch.channels_last)
                with self.runtime.autocast():
                    logits = self.model(view).float()
                if total is None and not skip_first:
                    single_view.append(logits.cpu())
                total = logits if total is None else total + logits
            tta_logits.append((total / len(views)).cpu())
        if not tta_logits:
            return torch.empty(0, 0), torch.empty(0, 0)
        return torch.cat(tta_logits), torch.cat(single_view) if single_view else torch.empty(0, 0)
