"""A convolution whose filter gradient, on small maps, is one matrix product per filter tap.

A finished study of the repository (not part of the package): docs/speed.md has what it measured, and
benchmarks/conv_backward.py measures it again (`conv_kernels.with_kernels` puts it into a built model).

On a 2-core Intel Xeon with AMX in bf16, oneDNN's filter-gradient kernel takes over half of a fastnet step's
convolution time and runs 2-6x slower than the forward pass on the same layer where the maps are small and wide
(256 channels at 7x7 down to 2x2). The gradient summed tap by tap, dW[:, :, i, j] = dY^T @ shifted X, took 0.2-0.7
of its time at 5x5 and below in every measurement, at 7x7 0.5-0.6, or 1.0-1.2 where the
machine ran twice as fast, and 2.7-12x more on large maps (benchmarks/conv_backward.py). So the choice is by the
input's side: up to `max_side` pixels the products, above it oneDNN. The forward pass and the input gradient stay
oneDNN's."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def tap_weight_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel: int, padding: int) -> torch.Tensor:
    """The filter gradient of a stride-1 convolution: dW[o, c, i, j] = sum over images and positions of
    grad_out[o] x input[c] shifted by (i, j). Channels-last views make each shifted input a (positions x channels)
    matrix, so no im2col of all the taps at once is built."""
    rows = F.pad(x.permute(0, 2, 3, 1), (0, 0, padding, padding, padding, padding))  # N, H + 2p, W + 2p, C
    height, width = grad_out.shape[2:]
    grad = grad_out.permute(0, 2, 3, 1).reshape(-1, grad_out.shape[1]).t()  # O x positions
    taps = [
        grad @ rows[:, i : i + height, j : j + width, :].reshape(-1, x.shape[1])
        for i in range(kernel)
        for j in range(kernel)
    ]
    return torch.stack(taps, dim=-1).view(grad_out.shape[1], x.shape[1], kernel, kernel)


class _TapGradConvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return F.conv2d(x, weight, None, 1, padding)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        p = ctx.padding
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            mask = [True, False, False]
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, [1, 1], [p, p], [1, 1], False, [0, 0], 1, mask
            )[0]
        if ctx.needs_input_grad[1]:
            grad_w = tap_weight_grad(x, grad_out, weight.shape[-1], p).to(weight.dtype)
        return grad_x, grad_w, None


class TapGradConv2d(nn.Conv2d):
    """A square stride-1 nn.Conv2d (same parameters and state dict) that computes its filter gradient tap by tap
    when its input is at most `max_side` pixels a side. Under autocast it computes in the autocast dtype, as
    nn.Conv2d does."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, padding: int, max_side: int, **kw):
        super().__init__(in_channels, out_channels, kernel_size, padding=padding, **kw)
        if self.stride != (1, 1) or self.groups != 1 or self.dilation != (1, 1):
            raise ValueError("TapGradConv2d is a stride-1, undilated, ungrouped convolution")
        self.max_side = max_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and self.weight.requires_grad) or max(x.shape[-2:]) > self.max_side:
            return super().forward(x)
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        with torch.autocast(device, enabled=False):
            out = _TapGradConvFunction.apply(x.to(dtype), self.weight.to(dtype), self.padding[0])
        return out if self.bias is None else out + self.bias.to(dtype).view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_side={self.max_side}"
