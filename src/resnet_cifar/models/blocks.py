"""Residual blocks, post-activation (He et al. 2015) and pre-activation (2016), basic and bottleneck. Every block takes
`shortcut` ("A", "B", or "none" for the plain twin), `norm` and option A's `shortcut_padding`, so one code path builds a
ResNet, its plain twin and both without batch norm; `zero_init_last()` starts a block as the identity (Goyal et al.
2017, section 5.1)."""

from __future__ import annotations

import torch
from torch import nn

from resnet_cifar.models.layers import conv1x1, conv3x3, make_shortcut, norm_layer


def _zero_last(norm: nn.Module, conv: nn.Conv2d) -> None:
    if isinstance(norm, nn.BatchNorm2d):
        nn.init.zeros_(norm.weight)
    else:  # without batch norm the branch's last convolution is the only scale to zero
        nn.init.zeros_(conv.weight)


class BasicBlock(nn.Module):
    """3x3 conv - norm - ReLU - 3x3 conv - norm, plus shortcut, then ReLU."""

    expansion = 1
    preact = False

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, shortcut: str = "A", norm: str = "bn",
        shortcut_padding: str = "after",
    ):
        super().__init__()
        bias = norm == "none"
        self.conv1 = conv3x3(in_channels, width, stride, bias=bias)
        self.bn1 = norm_layer(norm, width)
        self.conv2 = conv3x3(width, width, bias=bias)
        self.bn2 = norm_layer(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(shortcut, in_channels, width, stride, norm, shortcut_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)

    def zero_init_last(self) -> None:
        _zero_last(self.bn2, self.conv2)


class Bottleneck(nn.Module):
    """1x1 reduce - 3x3 (strided) - 1x1 expand (x4), each followed by norm, plus shortcut, then ReLU."""

    expansion = 4
    preact = False

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, shortcut: str = "B", norm: str = "bn",
        shortcut_padding: str = "after",
    ):
        super().__init__()
        bias = norm == "none"
        out_channels = width * self.expansion
        self.conv1 = conv1x1(in_channels, width, bias=bias)
        self.bn1 = norm_layer(norm, width)
        self.conv2 = conv3x3(width, width, stride, bias=bias)
        self.bn2 = norm_layer(norm, width)
        self.conv3 = conv1x1(width, out_channels, bias=bias)
        self.bn3 = norm_layer(norm, out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, norm, shortcut_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.relu(out)

    def zero_init_last(self) -> None:
        _zero_last(self.bn3, self.conv3)


def _preact_shortcut(
    kind: str, in_channels: int, out_channels: int, stride: int, padding: str = "after"
) -> nn.Module | None:
    # The projection sees the already normalised input, so it is a bare 1x1 convolution (He et al. 2016, Fig. 4).
    if kind == "B" and (stride != 1 or in_channels != out_channels):
        return conv1x1(in_channels, out_channels, stride)
    return make_shortcut(kind, in_channels, out_channels, stride, norm="none", padding=padding)


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: norm - ReLU - 3x3 conv - norm - ReLU - 3x3 conv, plus shortcut, nothing after."""

    expansion = 1
    preact = True

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, shortcut: str = "B", norm: str = "bn",
        shortcut_padding: str = "after",
    ):
        super().__init__()
        bias = norm == "none"
        self.bn1 = norm_layer(norm, in_channels)
        self.conv1 = conv3x3(in_channels, width, stride, bias=bias)
        self.bn2 = norm_layer(norm, width)
        self.conv2 = conv3x3(width, width, bias=bias)
        self.relu = nn.ReLU()  # not in-place: the pre-activated input may feed the projection shortcut
        self.shortcut = _preact_shortcut(shortcut, in_channels, width, stride, shortcut_padding)
        self.project = isinstance(self.shortcut, nn.Conv2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        if self.shortcut is not None:
            out = out + self.shortcut(pre if self.project else x)
        return out

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.weight)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: (norm - ReLU - conv) x 3 with 1x1 / 3x3 / 1x1 (x4) convolutions, plus shortcut."""

    expansion = 4
    preact = True

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, shortcut: str = "B", norm: str = "bn",
        shortcut_padding: str = "after",
    ):
        super().__init__()
        bias = norm == "none"
        out_channels = width * self.expansion
        self.bn1 = norm_layer(norm, in_channels)
        self.conv1 = conv1x1(in_channels, width, bias=bias)
        self.bn2 = norm_layer(norm, width)
        self.conv2 = conv3x3(width, width, stride, bias=bias)
        self.bn3 = norm_layer(norm, width)
        self.conv3 = conv1x1(width, out_channels, bias=bias)
        self.relu = nn.ReLU()
        self.shortcut = _preact_shortcut(shortcut, in_channels, out_channels, stride, shortcut_padding)
        self.project = isinstance(self.shortcut, nn.Conv2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        if self.shortcut is not None:
            out = out + self.shortcut(pre if self.project else x)
        return out

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.weight)
