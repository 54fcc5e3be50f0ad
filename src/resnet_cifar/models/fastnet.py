"""Fast residual networks for small hardware, in the line of Page's ResNet-9 and Keller Jordan's airbench: few wide
stages, each a convolution with 2x2 max-pooling and residual blocks after it, a global max-pool and a scaled linear
head (width is what a CPU's matrix units run efficiently)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from resnet_cifar.models.layers import GlobalMaxPool, conv3x3, norm_layer
from resnet_cifar.models.registry import register_model

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


class ConvBN(nn.Sequential):
    """conv3x3 - (optional 2x2 max-pool) - norm - activation."""

    def __init__(
        self, in_channels: int, out_channels: int, *, pool: bool, norm: str, act: str,
    ):
        layers: list[nn.Module] = [conv3x3(in_channels, out_channels, bias=norm == "none")]
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += [norm_layer(norm, out_channels), _activation(act)]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """x + f(x), f = `convs` ConvBN layers of the same width (two: Page's ResNet-9 residual block).

    `shortcut=False` drops the identity and returns f(x): the block of the plain twin (same layers and weights).
    `gate=True` returns x + g * f(x) with a learned scalar g starting at 0 (SkipInit, De & Smith 2020): the block
    starts as the identity and lets the branch in as fast as it helps; batch norms without a trained scale
    (bn_scale=False) cannot weigh the branch down themselves.
    `post_act=True` moves the branch's last activation after the sum: act(x + f(x)) (He et al. 2015's block).
    """

    def __init__(
        self, channels: int, *, norm: str, act: str, convs: int = 2, shortcut: bool = True, gate: bool = False,
        post_act: bool = False,
    ):
        super().__init__()
        layers = [ConvBN(channels, channels, pool=False, norm=norm, act=act) for _ in range(convs)]
        self.post_act = layers[-1][-1] if post_act else None
        if post_act:
            layers[-1][-1] = nn.Identity()
        self.branch = nn.Sequential(*layers)
        self.shortcut = shortcut
        self.gate = nn.Parameter(torch.zeros(())) if gate else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if self.gate is not None:
            out = self.gate * out
        if self.shortcut:
            out = x + out
        return self.post_act(out) if self.post_act is not None else out

    def zero_init_last(self) -> None:
        bn = self.branch[-1][1]
        if isinstance(bn, nn.BatchNorm2d):
            nn.init.zeros_(bn.weight)


def patch_covariance(images: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """The covariance (float64, 12 x 12) of the images' 2x2 patches, summed over chunks of images so that no copy of
    all patches at once is made (the patches of 5,000 images would be half a gigabyte in float64)."""
    total, outer, count = torch.zeros(12, dtype=torch.float64), torch.zeros(12, 12, dtype=torch.float64), 0
    for part in images.split(chunk):
        patches = part.unfold(2, 2, 1).unfold(3, 2, 1)  # n, 3, H-1, W-1, 2, 2
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
        total, outer, count = total + patches.sum(dim=0), outer + patches.T @ patches, count + len(patches)
    mean = total / count
    return outer / count - torch.outer(mean, mean)


class WhiteningStem(nn.Module):
    """A 2x2 convolution (no padding) whose filters whiten image patches, then an activation (airbench's first
    layer). `whiten_(images)` sets the filters from the eigenvectors of the patch covariance of training images:
    each eigenvector scaled by 1/sqrt(eigenvalue), and its negative, so the output starts decorrelated.

    The filters stay fixed. `train_bias=False` freezes the bias too: then nothing before the first 3x3 convolution
    learns, and the backward pass skips that convolution's input gradient (the costliest part of a step at 31x31)."""

    def __init__(self, width: int = 24, act: str = "gelu", *, train_bias: bool = True):
        super().__init__()
        if width % 2 or width > 24:
            raise ValueError("the whitening stem needs an even width of at most 24 (12 patch dimensions x 2)")
        self.conv = nn.Conv2d(3, width, kernel_size=2, padding=0, bias=True)
        self.conv.bias.requires_grad_(train_bias)
        self.act = _activation(act)

    @torch.no_grad()
    def whiten_(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """images: normalised float N x 3 x H x W (a few thousand are plenty)."""
        eigenvalues, eigenvectors = torch.linalg.eigh(patch_covariance(images))
        order = eigenvalues.argsort(descending=True)  # largest first
        eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
        half = self.conv.out_channels // 2
        filters = (eigenvectors.T[:half] / torch.sqrt(eigenvalues[:half, None] + eps)).view(half, 3, 2, 2)
        self.conv.weight.copy_(torch.cat([filters, -filters]).to(self.conv.weight.dtype))
        self.conv.bias.zero_()
        self.conv.weight.requires_grad_(False)  # the whitening stays fixed; its bias learns unless frozen (__init__)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class FastResNet(nn.Module):
    """stem ConvBN, then per stage: ConvBN with max-pool and `blocks[i]` residual pairs; max-pool; scaled linear.

    Args:
        widths: channels of each stage (each stage halves the resolution).
        blocks: residual pairs after each stage's pooling conv.
        stem_width: channels of the stem convolution at full resolution.
        head_scale: the logits are multiplied by this (Page uses 0.125), which tempers the output early on.
        residual: False builds the plain twin: the same layers with every identity shortcut removed.
        train_stem_bias: False freezes the whitening stem's bias at zero (stem="whiten" only).
        bn_scale: False fixes every batch norm's scale at 1 (only its shift learns): the convolutions before it are
            then scale-invariant, and weight decay only sets their effective learning rate (airbench).
        bn_momentum: weight of the batch's statistics in the running ones (PyTorch's convention; airbench's
            "momentum 0.6" is 0.4 here): the running statistics follow the fast-moving weights of a short run.
        residual_gate, post_act: see ResidualBlock.
        dirac_init: start each 3x3 convolution with its first in_channels filters as identities (the rest random),
            so every layer begins by passing its input through (airbench).
    """

    def __init__(
        self, widths: Sequence[int] = (128, 256, 512), blocks: Sequence[int] = (1, 0, 1), *, stem_width: int = 64,
        num_classes: int = 10, norm: str = "bn", act: str = "relu", head_scale: float = 0.125,
        zero_init_residual: bool = False, residual_convs: int = 2, stem: str = "conv", residual: bool = True,
        train_stem_bias: bool = True, bn_scale: bool = True, bn_momentum: float = 0.1, dirac_init: bool = False,
        residual_gate: bool = False, post_act: bool = False,
    ):
        super().__init__()
        changes_sum = residual_gate or post_act
        _check_options(len(widths) == len(blocks), stem, zero_init_residual, residual, changes_sum, bn_scale,
                       train_stem_bias)  # fmt: skip
        if stem == "whiten":
            self.stem = WhiteningStem(stem_width, act, train_bias=train_stem_bias)
        else:
            self.stem = ConvBN(3, stem_width, pool=False, norm=norm, act=act)
        block = dict(norm=norm, act=act, convs=residual_convs, shortcut=residual, gate=residual_gate, post_act=post_act)
        self.stages = nn.Sequential(*_stages(stem_width, widths, blocks, block))
        self.pool = GlobalMaxPool()
        self.num_features = channels = widths[-1] if widths else stem_width
        self.head_scale = head_scale
        self.fc = nn.Linear(channels, num_classes, bias=False)
        _init_weights(self, dirac=dirac_init, zero_last=zero_init_residual)
        _configure_batch_norms(self, scale=bn_scale, momentum=bn_momentum)

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


def _stages(channels: int, widths: Sequence[int], blocks: Sequence[int], block: dict) -> list[nn.Sequential]:
    """Each stage: a ConvBN with 2x2 max-pooling to its width, then its residual blocks."""
    stages = []
    for width, count in zip(widths, blocks, strict=True):
        layers = [ConvBN(channels, width, pool=True, norm=block["norm"], act=block["act"])]
        stages.append(nn.Sequential(*layers, *(ResidualBlock(width, **block) for _ in range(count))))
        channels = width
    return stages


def _check_options(same_length, stem, zero_init_residual, residual, changes_sum, bn_scale, train_stem_bias) -> None:
    if not same_length:
        raise ValueError("widths and blocks must have the same length")
    if stem not in ("conv", "whiten"):
        raise ValueError(f"stem must be 'conv' or 'whiten', got {stem!r}")
    if zero_init_residual and not residual:
        raise ValueError("zero_init_residual would zero the plain twin's blocks: it needs residual=True")
    if changes_sum and not residual:
        raise ValueError("residual_gate and post_act change the residual sum: they need residual=True")
    if zero_init_residual and not bn_scale:
        raise ValueError("zero_init_residual zeroes a batch-norm scale, which bn_scale=False fixes at 1")
    if not train_stem_bias and stem != "whiten":
        raise ValueError("train_stem_bias=False is an option of the whitening stem (stem='whiten')")


def _init_weights(model: FastResNet, *, dirac: bool, zero_last: bool) -> None:
    """Kaiming (fan-out) filters, zero biases; identity filters in the stages (`dirac`); each residual branch's last
    batch-norm scale zeroed (`zero_last`)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for module in model.stages.modules():
        if dirac and isinstance(module, nn.Conv2d):
            _dirac_(module.weight)
        if zero_last and isinstance(module, ResidualBlock):
            module.zero_init_last()


@torch.no_grad()
def _dirac_(weight: torch.Tensor) -> None:
    """Filters 0..in_channels-1 become identities (out >= in in these nets); later filters keep their random init."""
    identities = min(weight.shape[0], weight.shape[1])
    nn.init.dirac_(weight[:identities])


def _configure_batch_norms(model: nn.Module, *, scale: bool, momentum: float) -> None:
    if not 0 < momentum <= 1:
        raise ValueError(f"bn_momentum must be in (0, 1], got {momentum}")
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = momentum
            if not scale:
                module.weight.requires_grad_(False)  # stays at 1


@register_model("resnet9", family="fast", depth=9, description="Page's ResNet-9 (DAWNBench): 64-128-256-512")
def resnet9(**kwargs) -> FastResNet:
    kwargs = {"widths": (128, 256, 512), "blocks": (1, 0, 1), "stem_width": 64, **kwargs}
    return FastResNet(**kwargs)


@register_model("fastnet", family="fast", depth=8, description="configurable fast residual net (widths, blocks)")
def fastnet(**kwargs) -> FastResNet:
    kwargs = {"widths": (64, 128, 256), "blocks": (1, 1, 1), "stem_width": 24, **kwargs}
    return FastResNet(**kwargs)
