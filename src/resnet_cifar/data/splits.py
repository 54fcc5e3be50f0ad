"""Seeded, class-balanced subsets and a stratified validation split carved from the training set, never overlapping
(the test set is not touched). Subsets are nested: with one seed a 10k subset contains the 5k one."""

from __future__ import annotations

import torch

from resnet_cifar.errors import ConfigError


def _per_class_permutations(labels: torch.Tensor, pool: torch.Tensor, seed: int, num_classes: int):
    generator = torch.Generator().manual_seed(seed)
    pool_labels = labels[pool]
    for cls in range(num_classes):
        members = pool[pool_labels == cls]
        yield cls, members[torch.randperm(len(members), generator=generator)]


def balanced_subset(
    labels: torch.Tensor, n: int, seed: int, *, pool: torch.Tensor | None = None, num_classes: int = 10
) -> torch.Tensor:
    """Sorted indices of exactly n / num_classes images of every class, drawn from `pool` (default: all)."""
    if n <= 0 or n % num_classes:
        raise ConfigError(f"subset size must be a positive multiple of {num_classes} (classes), got {n}")
    pool = torch.arange(len(labels)) if pool is None else pool
    per_class = n // num_classes
    chosen = []
    for cls, members in _per_class_permutations(labels, pool, seed, num_classes):
        if len(members) < per_class:
            raise ConfigError(
                f"subset of {n} needs {per_class} images of class {cls}, but only {len(members)} are available"
            )
        chosen.append(members[:per_class])
    return torch.cat(chosen).sort().values


def train_val_split(
    labels: torch.Tensor, val_size: int, seed: int, *, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices): a stratified validation set of `val_size` images and the rest."""
    if val_size == 0:
        return torch.arange(len(labels)), torch.empty(0, dtype=torch.long)
    val = balanced_subset(labels, val_size, seed, num_classes=num_classes)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[val] = False
    return keep.nonzero().flatten(), val


def subset(labels: torch.Tensor, n: int, seed: int, **kwargs) -> torch.Tensor:
    """Alias of `balanced_subset`."""
    return balanced_subset(labels, n, seed, **kwargs)
