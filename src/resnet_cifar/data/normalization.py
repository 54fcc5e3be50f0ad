"""Per-channel input normalisation, and its record in every checkpoint and weights file: weights work only with the
statistics they were trained with (CIFAR-10's here, ImageNet's for akamaster's files), so every consumer reads them
from the file; files without the record are CIFAR-10's."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from resnet_cifar.errors import ConfigError

# Per-channel statistics of the 50,000 training images, pixels scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Normalization:
    """(pixel / 255 - mean) / std per RGB channel."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self):
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3 or not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
                raise ConfigError(f"normalization {name} must be 3 finite numbers (R, G, B), got {list(values)}")
        if min(self.std) <= 0:
            raise ConfigError(f"normalization std must be positive, got {list(self.std)}")
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def as_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    def describe(self) -> str:
        known = {CIFAR10: "CIFAR-10's", IMAGENET: "ImageNet's"}.get(self, "custom")
        return f"{known} mean {list(self.mean)} std {list(self.std)}"

    @classmethod
    def from_dict(cls, value: Any) -> Normalization:
        if not isinstance(value, dict) or set(value) != {"mean", "std"}:
            raise ConfigError(f"normalization must be {{'mean': [r, g, b], 'std': [r, g, b]}}, got {value!r}")
        return cls(tuple(value["mean"]), tuple(value["std"]))


CIFAR10 = Normalization(CIFAR10_MEAN, CIFAR10_STD)
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def recorded_normalization(metadata: dict[str, Any]) -> Normalization:
    """The normalisation a checkpoint's or weights file's metadata records; CIFAR-10's for files without one."""
    value = metadata.get("normalization")
    return CIFAR10 if value is None else Normalization.from_dict(value)


def normalize(
    images: torch.Tensor, dtype: torch.dtype = torch.float32, normalization: Normalization = CIFAR10
) -> torch.Tensor:
    """uint8 (or [0, 255] float) N x 3 x H x W -> float, zero mean and unit variance per channel."""
    mean = torch.tensor(normalization.mean, dtype=dtype, device=images.device).view(1, 3, 1, 1) * 255
    inv_std = 1 / (torch.tensor(normalization.std, dtype=dtype, device=images.device).view(1, 3, 1, 1) * 255)
    out = images.to(dtype, copy=True)  # a fresh tensor, so the in-place ops below never touch the input
    return out.sub_(mean).mul_(inv_std)
