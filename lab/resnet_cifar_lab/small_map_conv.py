"""A 3x3 convolution that, on maps of a few pixels a side, runs as one dense matrix product.

A finished study of the repository (not part of the package): docs/speed.md has what it measured, and
benchmarks/conv_backward.py measures it again (`conv_kernels.with_kernels` puts it into a built model).

On a map of h x w pixels a padded 3x3 convolution is a linear map from the h*w*C input values to the h*w*O output
values, whose matrix holds each filter tap in the (output pixel, input pixel) blocks that tap connects and zeros
elsewhere. On 3x3 and 2x2 maps that matrix is no larger than an im2col of the padded input (2x2: every block is a
tap; 3x3: the zero blocks are exactly the padding's), and a channels-last input already is its (images x h*w*C)
left-hand side, so forward, input gradient and filter gradient are three plain matrix products. oneDNN's
convolution kernels run these layers (fastnet's last 256-channel convolution) far below the matrix units' speed: on
a 2-core Intel Xeon with AMX in bf16, forward plus backward of the 256->256 layer at batch 1000 took 280-370 ms with
oneDNN and 26-51 ms as the dense product on 2x2 maps, 285-350 against 110-210 ms on 3x3 maps (benchmarks/
conv_backward.py times it in whole training steps). On larger maps the dense matrix is mostly zeros and loses.

The matrix is built from the filters in float32 by a product with a fixed 0/1 placement tensor, so its gradient
sums each tap's blocks in float32 and the filter gradient is as exact as oneDNN's (both round the product to bf16
once per block under autocast; measured against a float64 reference, the same error).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache
def tap_placement(height: int, width: int, device: torch.device) -> torch.Tensor:
    """P[out pixel, in pixel, tap] = 1 where the input pixel is filter tap (i, j) of the output pixel (a 3x3
    kernel with padding 1; pixels numbered row by row, taps i * 3 + j)."""
    placement = torch.zeros(height * width, height * width, 9)
    for row in range(height):
        for col in range(width):
            for i in range(3):
                for j in range(3):
                    src_row, src_col = row + i - 1, col + j - 1
                    if 0 <= src_row < height and 0 <= src_col < width:
                        placement[row * width + col, src_row * width + src_col, i * 3 + j] = 1
    return placement.to(device)


def dense_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """conv2d(x, weight, bias, padding=1) for a 3x3 `weight`, as one matrix product over the whole map. The result
    is channels-last in memory. Under autocast the product computes in the autocast dtype, as a convolution does."""
    images, channels, height, width = x.shape
    out_channels = weight.shape[0]
    exact = torch.promote_types(weight.dtype, torch.float32)  # bf16 filters are placed in float32
    placement = tap_placement(height, width, x.device).to(exact)
    with torch.autocast(x.device.type, enabled=False):
        # (out pixel, out channel) x (in pixel, in channel): the rows match the channels-last input's layout
        matrix = torch.einsum("pqt,oct->poqc", placement, weight.flatten(2).to(exact)).to(weight.dtype)
    flat = x.permute(0, 2, 3, 1).reshape(images, height * width * channels)
    out = F.linear(flat, matrix.reshape(height * width * out_channels, height * width * channels))
    out = out.view(images, height, width, out_channels).permute(0, 3, 1, 2)
    return out if bias is None else out + bias.to(out.dtype).view(1, -1, 1, 1)


class SmallMapConv2d(nn.Conv2d):
    """A 3x3, padding-1, stride-1 nn.Conv2d (the same parameters and state dict) that runs as `dense_conv3x3` when
    its input is at most `max_side` pixels a side, and as nn.Conv2d otherwise."""

    def __init__(self, in_channels: int, out_channels: int, *, max_side: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 3, padding=1, bias=bias)
        self.max_side = max_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if max(x.shape[-2:]) > self.max_side:
            return super().forward(x)
        return dense_conv3x3(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_side={self.max_side}"
