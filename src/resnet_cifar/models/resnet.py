"""One ResNet class for every depth, and the registered builders of the whole family.

* He et al. 2015 §4.2 CIFAR ResNets: 6n+2 layers, 16/32/64 channels, option A shortcuts (`resnet20` ... `resnet1202`)
  and their plain twins without shortcuts (`plain20` ... `plain110`).
* He et al. 2016 pre-activation CIFAR ResNets (`preact_resnet20` ... `preact_resnet1001`, bottleneck from 164 on).
* ResNet-18 ... 152 (BasicBlock / Bottleneck, 64-512 channels) and their pre-activation versions with a CIFAR stem:
  one 3x3 stride-1 convolution and no max-pool, because the ImageNet stem (7x7/2 conv + max-pool) would shrink a
  32x32 image to 8x8 before the first block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from resnet_cifar.models.blocks import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck
from resnet_cifar.models.layers import conv3x3, norm_layer
from resnet_cifar.models.registry import register_model

BlockType = type[BasicBlock] | type[Bottleneck] | type[PreActBasicBlock] | type[PreActBottleneck]


class ResNet(nn.Module):
    """A stem, stages of residual blocks (the first of each later stage halves the resolution), pooling, a classifier.

    Args:
        block: block class; its `expansion` sets output channels and its `preact` flag the stem and final norm.
        stage_blocks: number of blocks per stage, e.g. (3, 3, 3) for ResNet-20.
        stage_widths: block width per stage, e.g. (16, 32, 64).
        stem_width: channels of the stem convolution.
        num_classes: size of the classifier output.
        shortcut: "A" (zero-padded identity), "B" (projection where the shape changes) or "none" (plain net).
        shortcut_padding: where option A's zero channels go, "after" the identity or "split" around it (see
            resnet_cifar.models.layers.PADDINGS); no parameter depends on it.
        norm: "bn" (batch norm) or "none".
        zero_init_residual: start every residual branch at zero so each block begins as the identity.
    """

    def __init__(
        self, block: BlockType, stage_blocks: Sequence[int], stage_widths: Sequence[int], *, stem_width: int,
        num_classes: int = 10, shortcut: str = "A", shortcut_padding: str = "after", norm: str = "bn",
        zero_init_residual: bool = False, in_channels: int = 3,
    ):
        super().__init__()
        if len(stage_blocks) != len(stage_widths):
            raise ValueError("stage_blocks and stage_widths must have the same length")
        if num_classes < 1:
            raise ValueError("num_classes must be positive")
        stem: list[nn.Module] = [conv3x3(in_channels, stem_width, bias=norm == "none")]
        if not block.preact:  # pre-activation blocks start with their own norm + ReLU
            stem += [norm_layer(norm, stem_width), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)

        stages, channels = [], stem_width
        for index, (blocks, width) in enumerate(zip(stage_blocks, stage_widths, strict=True)):
            layers = []
            for i in range(blocks):
                stride = 2 if index > 0 and i == 0 else 1
                layers.append(block(channels, width, stride, shortcut, norm, shortcut_padding))
                channels = width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        # Pre-activation nets end with the norm + ReLU their last block does not apply (He et al. 2016, §3.2).
        self.final_act = nn.Sequential(norm_layer(norm, channels), nn.ReLU()) if block.preact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(zero_init_residual and shortcut != "none")

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if hasattr(module, "zero_init_last"):
                    module.zero_init_last()

    def blocks(self) -> list[nn.Module]:
        """All residual (or plain) blocks from input to output."""
        return [block for stage in self.stages for block in stage]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, before pooling."""
        return self.final_act(self.stages(self.stem(x)))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = torch.flatten(self.pool(features), 1)
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier, e.g. to fine-tune on another label set."""
        self.fc = nn.Linear(self.num_features, num_classes)


# --- He et al. 2015 §4.2: CIFAR ResNets and plain twins --------------------------------------------------------


def cifar_resnet(depth: int, *, shortcut: str = "A", **kwargs) -> ResNet:
    """The 6n+2-layer CIFAR ResNet: 3 stages of n basic blocks with 16, 32 and 64 channels."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, ...), got {depth}")
    n = (depth - 2) // 6
    return ResNet(BasicBlock, (n, n, n), (16, 32, 64), stem_width=16, shortcut=shortcut, **kwargs)


def plain_net(depth: int, **kwargs) -> ResNet:
    """The plain twin of `cifar_resnet(depth)`: identical layers, no shortcuts."""
    kwargs.pop("shortcut", None)
    return cifar_resnet(depth, shortcut="none", **kwargs)


def preact_cifar_resnet(depth: int, *, shortcut: str = "B", **kwargs) -> ResNet:
    """He et al. 2016 pre-activation CIFAR ResNet: basic blocks (6n+2) below 164 layers, bottlenecks (9n+2) from it."""
    if depth >= 164:
        if (depth - 2) % 9:
            raise ValueError(f"bottleneck pre-activation depth must be 9n+2, got {depth}")
        n = (depth - 2) // 9
        return ResNet(PreActBottleneck, (n, n, n), (16, 32, 64), stem_width=16, shortcut=shortcut, **kwargs)
    if (depth - 2) % 6:
        raise ValueError(f"pre-activation basic depth must be 6n+2, got {depth}")
    n = (depth - 2) // 6
    return ResNet(PreActBasicBlock, (n, n, n), (16, 32, 64), stem_width=16, shortcut=shortcut, **kwargs)


# --- ResNet-18 ... 152 with a CIFAR stem -----------------------------------------------------------------------

IMAGENET_LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def resnet_with_cifar_stem(depth: int, *, preact: bool = False, shortcut: str = "B", **kwargs) -> ResNet:
    """ResNet-18/34 (basic) and 50/101/152 (bottleneck), 64-512 channels, with a 3x3 stride-1 stem."""
    if depth not in IMAGENET_LAYOUTS:
        raise ValueError(f"depth must be one of {sorted(IMAGENET_LAYOUTS)}, got {depth}")
    bottleneck = depth >= 50
    block = {
        (False, False): BasicBlock, (False, True): PreActBasicBlock, (True, False): Bottleneck,
        (True, True): PreActBottleneck,
    }[bottleneck, preact]
    return ResNet(block, IMAGENET_LAYOUTS[depth], (64, 128, 256, 512), stem_width=64, shortcut=shortcut, **kwargs)


# --- the registered builders, one per name (as torchvision writes them: `grep "def resnet56"` finds it) ---


@register_model("resnet20", family="cifar-resnet", depth=20, paper_params_m=0.27)
def resnet20(**kwargs) -> ResNet:
    """He et al. 2015 CIFAR ResNet-20 (option A shortcuts; shortcut='B' for projections)"""
    return cifar_resnet(20, **kwargs)


@register_model("resnet32", family="cifar-resnet", depth=32, paper_params_m=0.46)
def resnet32(**kwargs) -> ResNet:
    """He et al. 2015 CIFAR ResNet-32 (option A shortcuts; shortcut='B' for projections)"""
    return cifar_resnet(32, **kwargs)


@register_model("resnet44", family="cifar-resnet", depth=44, paper_params_m=0.66)
def resnet44(**kwargs) -> ResNet:
    """He et al. 2015 CIFAR ResNet-44 (option A shortcuts; shortcut='B' for projections)"""
    return cifar_resnet(44, **kwargs)


@register_model("resnet56", family="cifar-resnet", depth=56, paper_params_m=0.85)
def resnet56(**kwargs) -> ResNet:
    """He et al. 2015 CIFAR ResNet-56 (option A shortcuts; shortcut='B' for projections)"""
    return cifar_resnet(56, **kwargs)


@register_model("resnet110", family="cifar-resnet", depth=110, paper_params_m=1.7)
def resnet110(**kwargs) -> ResNet:
    """He et al. 2015 CIFAR ResNet-110 (option A shortcuts; shortcut='B' for projections)"""
    return cifar_resnet(110, **kwargs)


@register_model("resnet1202", family="cifar-resnet", depth=1202, paper_params_m=19.4)
def resnet1202(**kwargs) -> ResNet:
    """He et al. 2015 CIFAR ResNet-1202 (option A shortcuts; shortcut='B' for projections)"""
    return cifar_resnet(1202, **kwargs)


@register_model("plain20", family="plain", depth=20, paper_params_m=0.27)
def plain20(**kwargs) -> ResNet:
    """plain twin of resnet20: the same layers without shortcuts"""
    return plain_net(20, **kwargs)


@register_model("plain32", family="plain", depth=32, paper_params_m=0.46)
def plain32(**kwargs) -> ResNet:
    """plain twin of resnet32: the same layers without shortcuts"""
    return plain_net(32, **kwargs)


@register_model("plain44", family="plain", depth=44, paper_params_m=0.66)
def plain44(**kwargs) -> ResNet:
    """plain twin of resnet44: the same layers without shortcuts"""
    return plain_net(44, **kwargs)


@register_model("plain56", family="plain", depth=56, paper_params_m=0.85)
def plain56(**kwargs) -> ResNet:
    """plain twin of resnet56: the same layers without shortcuts"""
    return plain_net(56, **kwargs)


@register_model("plain110", family="plain", depth=110, paper_params_m=1.7)
def plain110(**kwargs) -> ResNet:
    """plain twin of resnet110: the same layers without shortcuts"""
    return plain_net(110, **kwargs)


@register_model("preact_resnet20", family="preact-cifar", depth=20, paper_params_m=None)
def preact_resnet20(**kwargs) -> ResNet:
    """He et al. 2016 pre-activation CIFAR ResNet-20"""
    return preact_cifar_resnet(20, **kwargs)


@register_model("preact_resnet56", family="preact-cifar", depth=56, paper_params_m=None)
def preact_resnet56(**kwargs) -> ResNet:
    """He et al. 2016 pre-activation CIFAR ResNet-56"""
    return preact_cifar_resnet(56, **kwargs)


@register_model("preact_resnet110", family="preact-cifar", depth=110, paper_params_m=1.7)
def preact_resnet110(**kwargs) -> ResNet:
    """He et al. 2016 pre-activation CIFAR ResNet-110"""
    return preact_cifar_resnet(110, **kwargs)


@register_model("preact_resnet164", family="preact-cifar", depth=164, paper_params_m=1.7)
def preact_resnet164(**kwargs) -> ResNet:
    """He et al. 2016 pre-activation CIFAR ResNet-164"""
    return preact_cifar_resnet(164, **kwargs)


@register_model("preact_resnet1001", family="preact-cifar", depth=1001, paper_params_m=10.2)
def preact_resnet1001(**kwargs) -> ResNet:
    """He et al. 2016 pre-activation CIFAR ResNet-1001"""
    return preact_cifar_resnet(1001, **kwargs)


@register_model("resnet18", family="resnet", depth=18)
def resnet18(**kwargs) -> ResNet:
    """ResNet-18 (64-512 channels) with a CIFAR stem"""
    return resnet_with_cifar_stem(18, **kwargs)


@register_model("resnet34", family="resnet", depth=34)
def resnet34(**kwargs) -> ResNet:
    """ResNet-34 (64-512 channels) with a CIFAR stem"""
    return resnet_with_cifar_stem(34, **kwargs)


@register_model("resnet50", family="resnet", depth=50)
def resnet50(**kwargs) -> ResNet:
    """ResNet-50 (64-512 channels) with a CIFAR stem"""
    return resnet_with_cifar_stem(50, **kwargs)


@register_model("resnet101", family="resnet", depth=101)
def resnet101(**kwargs) -> ResNet:
    """ResNet-101 (64-512 channels) with a CIFAR stem"""
    return resnet_with_cifar_stem(101, **kwargs)


@register_model("resnet152", family="resnet", depth=152)
def resnet152(**kwargs) -> ResNet:
    """ResNet-152 (64-512 channels) with a CIFAR stem"""
    return resnet_with_cifar_stem(152, **kwargs)


@register_model("preact_resnet18", family="preact-resnet", depth=18)
def preact_resnet18(**kwargs) -> ResNet:
    """pre-activation ResNet-18 (64-512 channels) with a CIFAR stem"""
    return resnet_with_cifar_stem(18, preact=True, **kwargs)


@register_model("preact_resnet34", family="preact-resnet", depth=34)
def preact_resnet34(**kwargs) -> ResNet:
    """pre-activation ResNet-34 (64-512 channels) with a CIFAR stem"""
    return resnet_with_cifar_stem(34, preact=True, **kwargs)


@register_model("preact_resnet50", family="preact-resnet", depth=50)
def preact_resnet50(**kwargs) -> ResNet:
    """pre-activation ResNet-50 (64-512 channels) with a CIFAR stem"""
    return resnet_with_cifar_stem(50, preact=True, **kwargs)


@register_model("preact_resnet101", family="preact-resnet", depth=101)
def preact_resnet101(**kwargs) -> ResNet:
    """pre-activation ResNet-101 (64-512 channels) with a CIFAR stem"""
    return resnet_with_cifar_stem(101, preact=True, **kwargs)


@register_model("preact_resnet152", family="preact-resnet", depth=152)
def preact_resnet152(**kwargs) -> ResNet:
    """pre-activation ResNet-152 (64-512 channels) with a CIFAR stem"""
    return resnet_with_cifar_stem(152, preact=True, **kwargs)
