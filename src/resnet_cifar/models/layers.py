"""Small building pieces shared by every network: convolutions, normalisation choice, shortcuts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.choices import SHORTCUT_PADDINGS as PADDINGS

NORMS = ("bn", "none")
SHORTCUTS = ("A", "B", "none")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=bias)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=bias)


def norm_layer(norm: str, channels: int) -> nn.Module:
    """Batch norm, or nothing (`norm="none"`, used to study nets without normalisation)."""
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")


class GlobalMaxPool(nn.Module):
    """The maximum over all positions, N x C x H x W -> N x C x 1 x 1, as `amax` (same values as
    `nn.AdaptiveMaxPool2d(1)`). Its backward is deterministic on CUDA, which adaptive max-pooling's is not (it refuses
    to run under `torch.use_deterministic_algorithms`); on a tie it splits the gradient evenly instead of picking one
    position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3), keepdim=True)


class ZeroPadShortcut(nn.Module):
    """He et al. 2015 option A: identity that subsamples by `stride` and zero-pads the extra channels.

    Parameter-free, so a ResNet with option A has exactly the parameters of its plain twin. Written as a module
    (not a lambda) so models stay picklable and scriptable.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, padding: str = "after"):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("option A shortcut cannot reduce channels")
        check_padding(padding)
        extra = out_channels - in_channels
        self.before = extra // 2 if padding == "split" else 0
        self.after = extra - self.before
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.before or self.after:
            x = F.pad(x, (0, 0, 0, 0, self.before, self.after))
        return x


def check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise ValueError(f"shortcut_padding must be one of {PADDINGS}, got {padding!r}")


def projection_shortcut(in_channels: int, out_channels: int, stride: int, norm: str) -> nn.Module:
    """He et al. 2015 option B: a strided 1x1 convolution (+ norm) where the shape changes."""
    conv = conv1x1(in_channels, out_channels, stride, bias=norm == "none")
    return nn.Sequential(conv, norm_layer(norm, out_channels))


def make_shortcut(
    kind: str, in_channels: int, out_channels: int, stride: int, norm: str, padding: str = "after"
) -> nn.Module | None:
    """The shortcut branch of a block: None for plain nets, identity where shapes match, else option A (its zeros
    placed by `padding`, see PADDINGS) or B."""
    check_padding(padding)
    if kind == "none":
        return None
    if kind not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {kind!r}")
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride, padding)
    return projection_shortcut(in_channels, out_channels, stride, norm)
