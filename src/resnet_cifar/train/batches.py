"""The run's data in memory and its batches, defined by counters rather than stateful iterators: epoch e's order and
batch k's augmentation are drawn from generators seeded by (seed, e) and (seed, e, k), so any step is reproduced
exactly after a resume, and each DDP rank takes its slice of the same global batch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from resnet_cifar.config import TrainConfig
from resnet_cifar.data.augment import Augmentation, AugmentParams
from resnet_cifar.data.cifar10 import load_split
from resnet_cifar.data.locate import find_dataset
from resnet_cifar.data.splits import balanced_subset, train_val_split
from resnet_cifar.errors import ConfigError
from resnet_cifar.seeding import derive_seed

FIRST_FLIPS_STREAM = 2**31  # derive_seed(seed, epoch) is an epoch's order: a stream number no epoch reaches


@dataclass
class TrainingData:
    train_images: torch.Tensor  # uint8 N x 3 x 32 x 32
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    folder: Path  # where the dataset was found (the test split is read from here at the end)
    format: str

    def load_test(self):
        return load_split(self.folder, "test", fmt=self.format)


def prepare_data(config: TrainConfig) -> TrainingData:
    dataset = find_dataset(config.data_dir, download=config.download)
    train = load_split(dataset.folder, "train", fmt=dataset.format)
    train_index, val_index = train_val_split(train.labels, config.val_size, config.data_seed)
    if config.train_size is not None:
        train_index = balanced_subset(train.labels, config.train_size, config.data_seed, pool=train_index)
    return TrainingData(
        train.images[train_index], train.labels[train_index], train.images[val_index], train.labels[val_index],
        dataset.folder, dataset.format,
    )


def augmentation_of(config: TrainConfig) -> Augmentation:
    """The config's training augmentation (its crop size is set per epoch by BatchStream.plan)."""
    return Augmentation(
        crop_padding=config.crop_padding, pad_mode=config.pad_mode, flip=config.flip, cutout=config.cutout,
        augmix=config.augmix, augmix_severity=config.augmix_severity, brightness=config.brightness,
        contrast=config.contrast,
    )


@dataclass(frozen=True)
class EpochPlan:
    """Everything random about one epoch, drawn up front and moved to the device once: the order of the images and
    every batch's augmentation draws. Batches are then slices of it, with no host-to-device copy per step."""

    order: torch.Tensor  # this rank's image indices, batch after batch
    params: AugmentParams | None  # one row per position in `order` (None: no step left in the epoch)
    augmentation: Augmentation  # with this epoch's crop size


@dataclass(frozen=True)
class BatchStream:
    """Global batches of an epoch, each split into `world_size` equal per-rank slices.

    `images` may live on the GPU (uint8): augmentation then runs there on whole batches; the random draws are still
    made on the CPU from the same seeded generators, so a batch is the same on any device and after any resume.
    """

    images: torch.Tensor
    labels: torch.Tensor
    augmentation: Augmentation
    global_batch: int
    seed: int
    rank: int = 0
    world_size: int = 1
    alternate_flips: bool = False  # image i is flipped in epoch e iff first_flips[i] xor (e odd)

    def __post_init__(self):
        if self.global_batch % self.world_size:
            raise ConfigError(f"batch_size {self.global_batch} is not divisible by the {self.world_size} processes")
        if self.global_batch > len(self.labels):
            raise ConfigError(f"batch_size {self.global_batch} is larger than the {len(self.labels)} training images")

    @property
    def steps_per_epoch(self) -> int:
        return len(self.labels) // self.global_batch  # the incomplete last batch is dropped

    @property
    def per_rank(self) -> int:
        return self.global_batch // self.world_size

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        return torch.randperm(len(self.labels), generator=generator)

    def plan(self, epoch: int, first_step: int = 0, crop_size: int = 32) -> EpochPlan:
        """This rank's share of the epoch's batches from `first_step` on, on the images' device."""
        augmentation = dataclasses.replace(self.augmentation, size=crop_size)

        def draws(index: int) -> AugmentParams:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, index))
            return augmentation.sample(self.global_batch, generator, self.images.shape[-1])

        steps = range(first_step, self.steps_per_epoch)
        mine = slice(self.rank * self.per_rank, (self.rank + 1) * self.per_rank)
        order = self.permutation(epoch)[: self.steps_per_epoch * self.global_batch].view(-1, self.global_batch)
        order = order[first_step:, mine].reshape(-1)
        params = AugmentParams.cat([draws(index)[mine] for index in steps]) if steps else None
        if params is not None and self.alternate_flips:
            params = dataclasses.replace(params, flip=self.first_flips()[order] ^ bool(epoch % 2))
        device = self.images.device
        return EpochPlan(order.to(device), params.to(device) if params is not None else None, augmentation)

    def first_flips(self) -> torch.Tensor:
        """Which images epoch 0 flips, for alternating flips: a fair coin per image, the same in every epoch's
        computation (seeded, so a resumed run continues the alternation)."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, FIRST_FLIPS_STREAM))
        return torch.rand(len(self.labels), generator=generator) < 0.5

    def batch(self, plan: EpochPlan, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of the `position`-th batch of `plan`: (normalised float images, labels)."""
        window = slice(position * self.per_rank, (position + 1) * self.per_rank)
        chosen = plan.order[window]
        return plan.augmentation.apply(self.images[chosen], plan.params[window]), self.labels[chosen]
