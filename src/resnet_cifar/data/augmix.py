"""AugMix (Hendrycks et al., ICLR 2020) on whole batches: each image a random convex mix of `WIDTH` chains of 1 to
`MAX_DEPTH` operations, mixed again with the image itself. The operations are the paper's (those that overlap the
corruption benchmark are left out, so it measures unseen corruptions), magnitudes up to `severity` of 10, chain
weights Dirichlet(1, 1, 1), final mix Beta(1, 1), every draw from the caller's generator (exact resume, DDP).
Images are floats in 0..255, N x 3 x H x W."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

OPS = (
    "autocontrast", "equalize", "posterize", "rotate", "solarize", "shear_x", "shear_y", "translate_x", "translate_y",
)
WIDTH, MAX_DEPTH = 3, 3


def sample_augmix(n: int, views: int, severity: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The draws of `views` AugMix views of n images: (operations, levels, signs, depths, chain weights, skip)."""
    shape = (n, views, WIDTH, MAX_DEPTH)
    operations = torch.randint(0, len(OPS), shape, generator=generator)
    levels = 0.1 + torch.rand(shape, generator=generator) * (severity - 0.1)  # as AugMix: uniform(0.1, severity)
    signs = torch.where(torch.rand(shape, generator=generator) < 0.5, -1.0, 1.0)
    depths = torch.randint(1, MAX_DEPTH + 1, (n, views, WIDTH), generator=generator)
    exponentials = -torch.log(torch.rand((n, views, WIDTH), generator=generator).clamp_min(1e-12))
    weights = exponentials / exponentials.sum(dim=-1, keepdim=True)  # Dirichlet(1, ..., 1)
    skip = torch.rand((n, views), generator=generator)  # Beta(1, 1)
    return operations, levels, signs, depths, weights, skip


def augmix(images: torch.Tensor, draws: tuple[torch.Tensor, ...], view: int) -> torch.Tensor:
    """View `view` of the images under their draws: skip * image + (1 - skip) * sum_c weight_c * chain_c(image)."""
    operations, levels, signs, depths, weights, skip = (t[:, view] for t in draws)
    mixed = torch.zeros_like(images)
    for chain in range(WIDTH):
        x = images
        for step in range(MAX_DEPTH):
            active = depths[:, chain] > step
            x = apply_operations(x, operations[:, chain, step], levels[:, chain, step], signs[:, chain, step], active)
        mixed = mixed + weights[:, chain].view(-1, 1, 1, 1) * x
    keep = skip.view(-1, 1, 1, 1)
    return keep * images + (1 - keep) * mixed


def apply_operations(
    x: torch.Tensor, operation: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, active: torch.Tensor
) -> torch.Tensor:
    """Each image (where `active`) under its own operation at its own level; the others unchanged."""
    out = x.clone()
    for index, name in enumerate(OPS):
        chosen = (active & (operation == index)).nonzero().flatten()
        if len(chosen):
            out[chosen] = _OPERATIONS[name](x[chosen], level[chosen], sign[chosen])
    return out


# --- the operations: images 0..255, one level (0.1 .. severity) and sign (+-1) per image -------------------------


def autocontrast(x, level, sign):
    low, high = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    stretched = (x - low) * 255 / (high - low).clamp_min(1)
    return torch.where(high > low, stretched.floor(), x)


def equalize(x, level, sign):
    """Histogram equalisation per image and channel, as PIL's ImageOps.equalize computes its lookup table."""
    values = x.round().clamp(0, 255).long()
    n, c = values.shape[:2]
    offsets = (torch.arange(n * c, device=x.device) * 256).view(n, c, 1, 1)
    histogram = torch.bincount((values + offsets).flatten(), minlength=n * c * 256).view(n, c, 256)
    last = histogram.gather(2, values.flatten(2).amax(2, keepdim=True))  # count of the brightest value present
    step = (histogram.sum(2, keepdim=True) - last) // 255
    cumulative = torch.cumsum(histogram, dim=2) - histogram  # pixels below each value
    lut = ((cumulative + step // 2) // step.clamp_min(1)).clamp(max=255)
    mapped = lut.gather(2, values.flatten(2)).view_as(x).float()
    return torch.where(step.view(n, c, 1, 1) > 0, mapped, x)


def posterize(x, level, sign):
    bits = 4 - (level * 4 / 10).long()  # 4 bits at the mildest, fewer stronger
    keep = (256 - (1 << (8 - bits))).view(-1, 1, 1, 1)
    return (x.round().clamp(0, 255).long() & keep).float()


def solarize(x, level, sign):
    threshold = (256 - (level * 256 / 10).long()).view(-1, 1, 1, 1).float()
    return torch.where(x >= threshold, 255 - x, x)


def rotate(x, level, sign):
    degrees = (level * 30 / 10).long().float() * sign
    radians = degrees * math.pi / 180
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    return _affine(x, torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1))


def shear_x(x, level, sign):
    shear = level * 0.3 / 10 * sign
    one, zero = torch.ones_like(shear), torch.zeros_like(shear)
    return _affine(x, torch.stack([torch.stack([one, shear, zero], 1), torch.stack([zero, one, zero], 1)], 1))


def shear_y(x, level, sign):
    shear = level * 0.3 / 10 * sign
    one, zero = torch.ones_like(shear), torch.zeros_like(shear)
    return _affine(x, torch.stack([torch.stack([one, zero, zero], 1), torch.stack([shear, one, zero], 1)], 1))


def translate_x(x, level, sign):
    return _translate(x, (level * x.shape[-1] / 3 / 10).long().float() * sign, dim=0)


def translate_y(x, level, sign):
    return _translate(x, (level * x.shape[-2] / 3 / 10).long().float() * sign, dim=1)


def _translate(x, pixels, dim: int):
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, dim, 2] = pixels * 2 / x.shape[-1 - dim]  # grid units: the image spans 2
    return _affine(x, theta)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Each image resampled (bilinear) at theta @ (x, y, 1) in grid units; outside it, black, as PIL fills."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


_OPERATIONS = {name: globals()[name] for name in OPS}
