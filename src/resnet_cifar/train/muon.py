"""Muon (Jordan et al. 2024) for convolution filters, SGD for the rest, as one optimizer: the filters step along the
nearest semi-orthogonal matrix to their Nesterov momentum (every direction at the same rate), each filter bank kept at
a fixed norm as airbench94_muon does. Per-group flags keep the loop, the schedule and the checkpoint's momentum
buffers as they are for SGD."""

from __future__ import annotations

import torch

# The quintic Newton-Schulz coefficients of Muon's reference implementation: they push every singular value in
# (0, 1] towards ~1 in a few iterations (not exactly to 1, which does not matter for training).
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """An approximately semi-orthogonal matrix with the singular vectors of `matrix` (2-d), in float32."""
    a, b, c = NEWTON_SCHULZ
    x = matrix.float() / (matrix.norm() + eps)  # every singular value at most 1
    wide = x.shape[0] <= x.shape[1]
    if not wide:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        # a x + (b G + c G G) x as two fused matrix products: the same arithmetic up to float32 rounding, 2-3x
        # faster on a CPU for make train's small filter banks (separate scalings and sums cost more than the products)
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x if wide else x.T


class MuonWithSGD(torch.optim.Optimizer):
    """Groups with `orthogonalize=True` take Muon steps, the others PyTorch SGD's (weight decay, momentum,
    Nesterov: the same arithmetic as `torch.optim.SGD`)."""

    def __init__(self, groups: list[dict], lr: float, momentum: float, nesterov: bool = True, ns_steps: int = 3):
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": 0.0}
        defaults |= {"orthogonalize": False, "ns_steps": ns_steps}
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            step = _muon_step if group["orthogonalize"] else _sgd_step
            for parameter in group["params"]:
                if parameter.grad is not None:
                    step(parameter, self.state[parameter], group)


def _momentum(grad: torch.Tensor, state: dict, group: dict) -> torch.Tensor:
    """SGD's momentum: the buffer starts as the first gradient; Nesterov looks one step ahead along it."""
    momentum = group["momentum"]
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = grad.clone()
    else:
        state["momentum_buffer"].mul_(momentum).add_(grad)
    buffer = state["momentum_buffer"]
    return grad.add(buffer, alpha=momentum) if group["nesterov"] else buffer


def _sgd_step(parameter: torch.Tensor, state: dict, group: dict) -> None:
    grad = parameter.grad
    if group["weight_decay"]:
        grad = grad.add(parameter, alpha=group["weight_decay"])
    parameter.add_(_momentum(grad, state, group), alpha=-group["lr"])


def _muon_step(parameter: torch.Tensor, state: dict, group: dict) -> None:
    direction = _momentum(parameter.grad, state, group)
    # fixed norm: each output filter of unit norm on average (the layer's batch norm ignores the scale)
    parameter.mul_(parameter.shape[0] ** 0.5 / parameter.norm())
    update = orthogonalize(direction.reshape(len(direction), -1), group["ns_steps"])
    parameter.add_(update.view_as(parameter).to(parameter.dtype), alpha=-group["lr"])
