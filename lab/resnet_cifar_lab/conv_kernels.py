"""The finished kernel studies put into a built model: every 3x3, stride-1, padding-1 convolution replaced by one that
computes the same function with the same parameters, by another kernel (tap_conv.py, small_map_conv.py)."""

from __future__ import annotations

from torch import nn

from resnet_cifar_lab.small_map_conv import SmallMapConv2d
from resnet_cifar_lab.tap_conv import TapGradConv2d


def with_kernels(model: nn.Module, *, tap_grad_max_side: int = 0, dense_conv_max_side: int = 0) -> nn.Module:
    """`model` with each 3x3 convolution's filter gradient computed tap by tap on inputs of at most
    `tap_grad_max_side` pixels a side, or the whole layer as one dense product on inputs of at most
    `dense_conv_max_side` (0: oneDNN's kernel, the layer left as it is). The state dict is unchanged."""
    if tap_grad_max_side < 0 or dense_conv_max_side < 0:
        raise ValueError(f"max sides must be >= 0, got {tap_grad_max_side} and {dense_conv_max_side}")
    if tap_grad_max_side and dense_conv_max_side:
        raise ValueError("tap_grad_max_side and dense_conv_max_side are two kernels for one layer: set one")
    if not (tap_grad_max_side or dense_conv_max_side):
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _is_plain_3x3(child):
                setattr(parent, name, _replacement(child, tap_grad_max_side, dense_conv_max_side))
    return model


def _is_plain_3x3(module: nn.Module) -> bool:
    return (
        type(module) is nn.Conv2d
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.padding == (1, 1)
        and module.groups == 1
        and module.dilation == (1, 1)
    )


def _replacement(conv: nn.Conv2d, tap_side: int, dense_side: int) -> nn.Conv2d:
    bias = conv.bias is not None
    if dense_side:
        new = SmallMapConv2d(conv.in_channels, conv.out_channels, max_side=dense_side, bias=bias)
    else:
        new = TapGradConv2d(conv.in_channels, conv.out_channels, 3, padding=1, bias=bias, max_side=tap_side)
    new.load_state_dict(conv.state_dict())
    new.weight.requires_grad_(conv.weight.requires_grad)
    return new.to(conv.weight.device, conv.weight.dtype)
