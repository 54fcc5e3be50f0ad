"""Fast residual networks for CIFAR-10 on small hardware, in the line of Page's ResNet-9 (DAWNBench 2018) and
Keller Jordan's airbench: few, wide stages, each a convolution followed by 2x2 max-pooling, with identity-shortcut
residual blocks after it; a global max-pool and a scaled linear head.

They trade depth for width because width is what a CPU's matrix units run efficiently; the residual blocks are what
make the deeper variants train in a few epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from resnet_cifar.models.layers import conv3x3, norm_layer
from resnet_cifar.models.registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class ConvBN(nn.Sequential):
    """conv3x3 - (optional 2x2 max-pool) - norm - activation."""

    def __init__(self, in_channels: int, out_channels: int, *, pool: bool, norm: str, act: str):
        layers: list[nn.Module] = [conv3x3(in_channels, out_channels, bias=norm == "none")]
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += [norm_layer(norm, out_channels), _activation(act)]
        super().__init__(*layers)


class ResidualPair(nn.Module):
    """x + f(x), f = two ConvBN layers of the same width (Page's ResNet-9 residual block)."""

    def __init__(self, channels: int, *, norm: str, act: str):
        super().__init__()
        self.conv1 = ConvBN(channels, channels, pool=False, norm=norm, act=act)
        self.conv2 = ConvBN(channels, channels, pool=False, norm=norm, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))

    def zero_init_last(self) -> None:
        bn = self.conv2[1]
        if isinstance(bn, nn.BatchNorm2d):
            nn.init.zeros_(bn.weight)


class FastResNet(nn.Module):
    """stem ConvBN, then per stage: ConvBN with max-pool and `blocks[i]` residual pairs; max-pool; scaled linear.

    Args:
        widths: channels of each stage (each stage halves the resolution).
        blocks: residual pairs after each stage's pooling conv.
        stem_width: channels of the stem convolution at full resolution.
        head_scale: the logits are multiplied by this (Page uses 0.125), which tempers the output early on.
    """

    def __init__(
        self,
        widths: Sequence[int] = (128, 256, 512),
        blocks: Sequence[int] = (1, 0, 1),
        *,
        stem_width: int = 64,
        num_classes: int = 10,
        norm: str = "bn",
        act: str = "relu",
        head_scale: float = 0.125,
        zero_init_residual: bool = False,
    ):
        super().__init__()
        if len(widths) != len(blocks):
            raise ValueError("widths and blocks must have the same length")
        self.stem = ConvBN(3, stem_width, pool=False, norm=norm, act=act)
        stages, channels = [], stem_width
        for width, count in zip(widths, blocks, strict=True):
            layers = [ConvBN(channels, width, pool=True, norm=norm, act=act)]
            layers += [ResidualPair(width, norm=norm, act=act) for _ in range(count)]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.num_features = channels
        self.head_scale = head_scale
        self.fc = nn.Linear(channels, num_classes, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, ResidualPair):
                    module.zero_init_last()

    def blocks(self) -> list[nn.Module]:
        return [layer for stage in self.stages for layer in stage]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = torch.flatten(self.pool(features), 1)
        return pooled if pre_logits else self.fc(pooled) * self.head_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes, bias=False)


@register_model("resnet9", family="fast", depth=9, description="Page's ResNet-9 (DAWNBench): 64-128-256-512")
def resnet9(**kwargs) -> FastResNet:
    kwargs = {"widths": (128, 256, 512), "blocks": (1, 0, 1), "stem_width": 64, **kwargs}
    return FastResNet(**kwargs)


@register_model("fastnet", family="fast", depth=8, description="configurable fast residual net (widths, blocks)")
def fastnet(**kwargs) -> FastResNet:
    kwargs = {"widths": (64, 128, 256), "blocks": (1, 1, 1), "stem_width": 24, **kwargs}
    return FastResNet(**kwargs)
