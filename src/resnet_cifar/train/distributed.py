"""torch.distributed set-up from torchrun's environment variables (RANK, WORLD_SIZE, LOCAL_RANK).

gloo on CPU, NCCL on CUDA. One process (rank 0) does all logging, checkpoints and pictures; `is_main` gates them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from resnet_cifar.runtime import Runtime


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # the processes on this machine (torchrun's LOCAL_WORLD_SIZE)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun with more than one process; a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return DistInfo(dist.get_rank(), dist.get_world_size(), *local)


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, info: DistInfo, device: torch.device | str = "cpu") -> bool:
    """True on every rank if `flag` is true on any rank (used to stop all ranks at the same step)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def agree_on_runtime(runtime: Runtime, info: DistInfo) -> Runtime:
    """Every rank computes in rank 0's precision (each rank keeps its own device)."""
    if not info.enabled:
        return runtime
    decision = [runtime.precision, runtime.reason]
    dist.broadcast_object_list(decision, src=0)
    return dataclasses.replace(runtime, precision=str(decision[0]), reason=str(decision[1]))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


@contextlib.contextmanager
def threads_of_waiting_ranks(info: DistInfo, device_type: str) -> Iterator[int]:
    """Under torchrun on a CPU the other ranks of this machine wait at a barrier while rank 0 tests (blocked, not
    spinning), so rank 0 takes their threads too: two one-thread ranks on two cores test with two threads, not one.
    Yields the number of threads used (recorded in results.json as timings.test_threads)."""
    threads = torch.get_num_threads()
    if info.enabled and device_type == "cpu":
        torch.set_num_threads(min(os.cpu_count() or 1, threads * info.local_world_size))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose gradient is the sum of the ranks' gradients (each rank's statistics feed every rank)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class CPUSyncBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics are taken over the global batch of all ranks, on any device.

    PyTorch's SyncBatchNorm only runs on accelerators; this one sums per-channel (count, sum, sum of squares)
    with the autograd-aware all_reduce, so gradients flow through the global statistics exactly as they do through
    a single process's batch norm over the whole batch.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x  # statistics in at least float32
        local = torch.stack([work.sum(dim=(0, 2, 3)), (work * work).sum(dim=(0, 2, 3))])
        count = torch.full((1, x.shape[1]), float(x.numel() // x.shape[1]), device=x.device, dtype=work.dtype)
        totals = _AllReduceSum.apply(torch.cat([local, count]))
        n = totals[2]
        mean = totals[0] / n
        var = totals[1] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * n / (n - 1).clamp(min=1)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(unbiased, momentum)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            shift = self.bias - mean * scale * self.weight
            scale = scale * self.weight
        else:
            shift = -mean * scale
        return (work * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)).to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device_type: str) -> nn.Module:
    """Replace every BatchNorm2d with a synchronised one (PyTorch's on CUDA, CPUSyncBatchNorm2d elsewhere)."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            synced = CPUSyncBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            like = next(iter(child.parameters()), child.running_mean)
            if like is not None:  # keep the replaced layer's device and dtype
                synced.to(device=like.device, dtype=like.dtype)
            synced.load_state_dict(child.state_dict())
            setattr(model, name, synced)
        else:
            convert_sync_batchnorm(child, device_type)
    return model
