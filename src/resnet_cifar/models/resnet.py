"""One ResNet class for every depth, and the registered builders: He et al. 2015's CIFAR ResNets (6n+2, 16/32/64,
option A) and their plain twins, He et al. 2016's pre-activation nets (bottleneck from 164 layers), and ResNet-18
to 152 with a CIFAR stem (one 3x3 stride-1 convolution, no max-pool)."""

from __future__ import annotations

import functools
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


# --- the registered builders, one per name: `create_model("resnet56")`, `resnet.resnet56()` ---------------------

HE_2015 = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7, 1202: 19.4}  # parameters (millions) as the papers print
HE_2016 = {20: None, 56: None, 110: 1.7, 164: 1.7, 1001: 10.2}
IMAGENET = dict.fromkeys((18, 34, 50, 101, 152))
FAMILIES = (  # family, name prefix, {depth: the paper's parameters}, builder, description
    ("cifar-resnet", "resnet", HE_2015, cifar_resnet,
     "He et al. 2015 CIFAR ResNet (option A shortcuts; shortcut='B' for projections)"),
    ("plain", "plain", {d: p for d, p in HE_2015.items() if d < 1000}, plain_net,
     "plain twin of the CIFAR ResNet: the same layers, no shortcuts"),
    ("preact-cifar", "preact_resnet", HE_2016, preact_cifar_resnet, "He et al. 2016 pre-activation CIFAR ResNet"),
    ("resnet", "resnet", IMAGENET, resnet_with_cifar_stem, "ResNet (64-512 channels) with a CIFAR stem"),
    ("preact-resnet", "preact_resnet", IMAGENET, functools.partial(resnet_with_cifar_stem, preact=True),
     "pre-activation ResNet (64-512 channels) with a CIFAR stem"),
)  # fmt: skip
for family, prefix, papers, build, description in FAMILIES:
    for depth, paper in papers.items():
        register = register_model(f"{prefix}{depth}", family=family, depth=depth, paper_params_m=paper,
                                  description=description)  # fmt: skip
        globals()[f"{prefix}{depth}"] = register(functools.partial(build, depth))
