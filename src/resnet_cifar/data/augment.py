"""Augmentation on whole batches of tensors (no per-image PIL calls): random crop with padding, horizontal flip,
AugMix (data/augmix.py), brightness and contrast jitter, cutout, and CIFAR-10 normalisation. Every random draw comes
from a caller-supplied `torch.Generator`, so a batch is reproduced exactly by reseeding it (the basis of exact
resume).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from resnet_cifar.choices import PAD_MODES
from resnet_cifar.data.augmix import augmix, sample_augmix
from resnet_cifar.data.normalization import CIFAR10_MEAN, CIFAR10_STD, normalize

__all__ = [
    "CIFAR10_MEAN", "CIFAR10_STD", "AugmentParams", "Augmentation", "apply_flip", "cutout", "cutout_mask", "normalize",
    "random_crop", "random_flip", "shift",
]


def _source_index(
    offsets: torch.Tensor, size: int, mode: str, out_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per image, the source coordinate of each of `out_size` output coordinates after shifting by `offsets` (N,)."""
    out_size = out_size or size
    index = torch.arange(out_size, device=offsets.device).view(1, out_size) + offsets.view(-1, 1)
    if mode == "reflect":  # mirror without repeating the edge pixel, like numpy's "reflect"
        index = index.abs()
        index = torch.where(index >= size, 2 * (size - 1) - index, index)
        return index, None
    inside = (index >= 0) & (index < size)
    return index.clamp(0, size - 1), inside


def shift(
    images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, mode: str = "reflect", size: int | None = None
) -> torch.Tensor:
    """Translate image i by (dy[i], dx[i]) pixels, filling the border by reflection or zeros, and keep the top-left
    `size` x `size` window (default: the whole image).

    The same as padding and cropping at an offset, done as two gathers without materialising the padded batch.
    """
    if mode not in PAD_MODES:
        raise ValueError(f"pad mode must be one of {PAD_MODES}, got {mode!r}")
    n, c, h, w = images.shape
    oh, ow = size or h, size or w
    rows, row_inside = _source_index(dy, h, mode, oh)
    cols, col_inside = _source_index(dx, w, mode, ow)
    out = images.gather(2, rows.view(n, 1, oh, 1).expand(n, c, oh, w))
    out = out.gather(3, cols.view(n, 1, 1, ow).expand(n, c, oh, ow))
    if mode == "zeros":
        inside = row_inside.view(n, 1, oh, 1) & col_inside.view(n, 1, 1, ow)
        out = out * inside.to(out.dtype)
    return out


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator, mode: str = "reflect") -> torch.Tensor:
    """Pad each image by `padding` pixels and crop back to its size at a random offset of its own."""
    if padding <= 0:
        return images
    dy = torch.randint(-padding, padding + 1, (len(images),), generator=generator)
    dx = torch.randint(-padding, padding + 1, (len(images),), generator=generator)
    return shift(images, dy, dx, mode)


def random_flip(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    return apply_flip(images, torch.rand(len(images), generator=generator) < p)


def apply_flip(images: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


def cutout_mask(top: torch.Tensor, left: torch.Tensor, size: int, h: int = 32, w: int = 32) -> torch.Tensor:
    """N x 1 x h x w boolean mask of size x size squares with top-left corners (top, left)."""
    top, left = top.view(-1, 1, 1), left.view(-1, 1, 1)
    ys = torch.arange(h, device=top.device).view(1, h, 1)
    xs = torch.arange(w, device=top.device).view(1, 1, w)
    return ((ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)).unsqueeze(1)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a size x size square per image at a random centre (DeVries & Taylor 2017); apply after normalising,
    so zero means the mean colour. The square may fall partly outside the image, as in the paper."""
    if size <= 0:
        return images
    n, _, h, w = images.shape
    top = torch.randint(0, h, (n,), generator=generator) - size // 2
    left = torch.randint(0, w, (n,), generator=generator) - size // 2
    return images.masked_fill(cutout_mask(top, left, size, h, w), 0.0)


@dataclass(frozen=True)
class AugmentParams:
    """The random draws for a batch, one row per image; slicing them gives a sub-batch's draws."""

    dy: torch.Tensor
    dx: torch.Tensor
    flip: torch.Tensor
    cut_top: torch.Tensor
    cut_left: torch.Tensor
    shift_by: torch.Tensor  # brightness: added to every normalised pixel (0 when the jitter is off)
    scale_by: torch.Tensor  # contrast: the normalised image is multiplied by it (1 when off)
    mix: tuple[torch.Tensor, ...] = ()  # AugMix's draws (data/augmix.py), one row per image; () when it is off

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return (self.dy, self.dx, self.flip, self.cut_top, self.cut_left, self.shift_by, self.scale_by, *self.mix)

    @staticmethod
    def _of(fields) -> AugmentParams:
        fields = tuple(fields)
        return AugmentParams(*fields[:7], mix=fields[7:])

    def __getitem__(self, index) -> AugmentParams:
        return AugmentParams._of(t[index] for t in self._fields())

    def to(self, device: torch.device | str) -> AugmentParams:
        return AugmentParams._of(t.to(device) for t in self._fields())

    @staticmethod
    def cat(parts: list[AugmentParams]) -> AugmentParams:
        return AugmentParams._of(torch.cat(column) for column in zip(*(p._fields() for p in parts), strict=True))


@dataclass(frozen=True)
class Augmentation:
    """The training augmentation: crop with padding, flip, cutout; uint8 in, normalised float out.

    `size` < 32 trains on random `size` x `size` windows of the padded image (cheaper steps; the networks end in a
    global pool, so they test on whole 32 x 32 images).

    `sample` draws every random number for n images first and `apply` uses them, so processes that each handle a
    slice of a batch (DDP) augment exactly as one process handling the whole batch would.
    """

    crop_padding: int = 4  # pixels padded on each side before the random 32x32 crop (0: no crop)
    pad_mode: str = "reflect"  # "reflect" or "zeros" (the paper's zero padding)
    flip: bool = True  # random horizontal flip with probability 0.5
    cutout: int = 0  # side of the cutout square in pixels (0: off)
    size: int = 32  # side of the training crop in pixels
    augmix: str = "off"  # "mix": one AugMix view; "jsd": the clean image and two views, image after image
    augmix_severity: int = 3  # AugMix's magnitude, of 10
    brightness: float = 0.0  # add a uniform draw from [-b, b] to the normalised image (0: off)
    contrast: float = 0.0  # multiply the normalised image by a uniform draw from [1 - c, 1 + c] (0: off)

    @property
    def views(self) -> int:
        """Training images made of each image: 3 for AugMix with the Jensen-Shannon loss, else 1."""
        return 3 if self.augmix == "jsd" else 1

    def sample(self, n: int, generator: torch.Generator, image_size: int = 32) -> AugmentParams:
        p, slack = self.crop_padding, image_size - self.size  # the window's top-left may also move by `slack`
        dy = torch.randint(-p, p + slack + 1, (n,), generator=generator)
        dx = torch.randint(-p, p + slack + 1, (n,), generator=generator)
        flip = torch.rand(n, generator=generator) < (0.5 if self.flip else 0.0)
        cut_top = torch.randint(0, self.size, (n,), generator=generator) - self.cutout // 2
        cut_left = torch.randint(0, self.size, (n,), generator=generator) - self.cutout // 2
        shift_by, scale_by = self._sample_jitter(n, generator)
        drawn = (dy, dx, flip, cut_top, cut_left, shift_by, scale_by)
        if self.augmix == "off":
            return AugmentParams(*drawn)
        views = 2 if self.augmix == "jsd" else 1
        return AugmentParams(*drawn, mix=sample_augmix(n, views, self.augmix_severity, generator))

    def _sample_jitter(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image, the brightness shift and the contrast factor. Nothing is drawn when the jitter is off, so the
        generator's stream (and every recipe without it) stays what it was."""
        if not (self.brightness or self.contrast):
            return torch.zeros(n), torch.ones(n)
        shift_by = (torch.rand(n, generator=generator) * 2 - 1) * self.brightness
        scale_by = 1 + (torch.rand(n, generator=generator) * 2 - 1) * self.contrast
        return shift_by, scale_by

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        if self.crop_padding or self.size != images.shape[-1]:
            images = shift(images, params.dy, params.dx, self.pad_mode, self.size)
        if self.flip:
            images = apply_flip(images, params.flip)
        if self.augmix != "off":
            images = self._augmix(images.float(), params.mix)
        out = normalize(images)
        if self.brightness or self.contrast:  # per image, on the normalised pixels (the hiverge CIFAR-10 record's)
            out = (out + params.shift_by.view(-1, 1, 1, 1)) * params.scale_by.view(-1, 1, 1, 1)
        if self.cutout:
            mask = cutout_mask(params.cut_top, params.cut_left, self.cutout, *out.shape[-2:])
            out = out.masked_fill(mask.repeat_interleave(self.views, dim=0), 0.0)
        return out

    def _augmix(self, images: torch.Tensor, draws: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.augmix == "mix":
            return augmix(images, draws, 0)
        views = (images, augmix(images, draws, 0), augmix(images, draws, 1))
        return torch.stack(views, dim=1).flatten(0, 1)  # image-major: micro-batches keep each image's three views

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(images, self.sample(len(images), generator, images.shape[-1]))
