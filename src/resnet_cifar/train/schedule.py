"""Learning-rate schedules as pure functions of the global step, so resuming at step k gives exactly the lr an
uninterrupted run has there (no scheduler object whose state could drift)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from resnet_cifar.config import TrainConfig


@dataclass(frozen=True)
class Schedule:
    """lr(step) for a run of `total_steps` steps of which `steps_per_epoch` make an epoch."""

    kind: str
    peak: float
    total_steps: int
    warmup_steps: int = 0
    warmup_start: float = 0.1  # fraction of peak at step 0 of the warmup
    final: float = 0.0  # fraction of peak at the last step
    milestones: tuple[int, ...] = ()  # step schedule, in steps
    gamma: float = 0.1

    def __call__(self, step: int) -> float:
        if self.kind == "constant":
            return self.peak
        if self.kind == "step":  # He et al. warm up ResNet-110 at a constant 0.1 x lr, then jump to lr
            start = self.warmup_start if step < self.warmup_steps else 1.0
            return start * self.peak * self.gamma ** sum(step >= m for m in self.milestones)
        if step < self.warmup_steps:
            progress = step / self.warmup_steps
            return self.peak * (self.warmup_start + (1 - self.warmup_start) * progress)
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        if self.kind == "cosine":
            shape = 0.5 * (1 + math.cos(math.pi * progress))
        else:  # "linear" and "onecycle" (linear up, linear down: the triangle of Smith's one-cycle policy)
            shape = 1 - progress
        return self.peak * (self.final + (1 - self.final) * shape)


def build_schedule(config: TrainConfig, total_steps: int, steps_per_epoch: int) -> Schedule:
    warmup_steps = round(config.warmup_epochs * steps_per_epoch)
    if config.warmup_steps is not None:
        warmup_steps = config.warmup_steps
    elif config.schedule == "onecycle" and warmup_steps == 0:
        warmup_steps = round(0.25 * total_steps)  # the one-cycle peak comes a quarter of the way in
    milestones = tuple(
        round(m * steps_per_epoch) if config.milestone_unit == "epoch" else int(m) for m in config.milestones
    )
    return Schedule(
        kind=config.schedule, peak=config.lr, total_steps=total_steps, warmup_steps=warmup_steps,
        warmup_start=config.warmup_start, final=config.final_lr, milestones=milestones, gamma=config.gamma,
    )
