"""Common corruptions of CIFAR-10 images at five severities, after Hendrycks & Dietterich (ICLR 2019, CIFAR-10-C):
written from the paper with CIFAR-10-C's per-severity constants, on whole batches, every draw seeded by
(seed, corruption, severity). 14 of the 15: frost needs photographs that are not ours to ship. Motion blur follows
ImageMagick's description, so the released files' exact pixels differ, not the kind and amount of corruption."""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SEVERITIES = (1, 2, 3, 4, 5)
FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"), "weather": ("snow", "fog"),
    "digital": ("brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"),
}
CORRUPTIONS = tuple(name for names in FAMILIES.values() for name in names)
LEFT_OUT = {"frost": "needs six photographs of frost (CIFAR-10-C's texture files), not redistributable here"}

# CIFAR-10-C's constants, one entry per severity 1..5
CONSTANTS = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),  # noise std
    "shot_noise": (500, 250, 100, 75, 50),  # photons per unit intensity
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),  # fraction of values set to 0 or 1
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),  # disk radius, its anti-alias blur
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),  # sigma, max shift, rounds
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),  # kernel radius, sigma
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),  # zooms 1.00, 1.01, ... below this, averaged
    "snow": (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),  # flake mean, std, zoom, threshold, streak radius, sigma, image kept
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),  # fog strength, fractal roughness decay
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),  # added to HSV value
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),  # factor on the distance to the channel mean
    "elastic_transform": (  # displacement scale, its smoothness, affine jitter (pixels, for 32x32)
        (0.0, 0.0, 2.56),
        (1.6, 6.4, 2.24),
        (2.56, 1.92, 1.92),
        (3.2, 1.28, 1.6),
        (3.2, 0.96, 0.96),
    ),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),  # box-downsampling factor
    "jpeg_compression": (80, 65, 58, 50, 40),  # JPEG quality
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """uint8 images N x 3 x H x W under corruption `name` at `severity` (1..5), as uint8 (values truncated, as
    CIFAR-10-C stores them)."""
    if name not in CORRUPTIONS:
        hint = f" ({LEFT_OUT[name]})" if name in LEFT_OUT else ""
        raise ValueError(f"unknown corruption {name!r}{hint}; one of {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1 to 5, got {severity}")
    generator = torch.Generator().manual_seed(_stream(seed, name, severity))
    x = images.float() / 255
    out = _FUNCTIONS[name](x, CONSTANTS[name][severity - 1], generator)
    return (out.clamp(0, 1) * 255).to(torch.uint8)


def _stream(seed: int, name: str, severity: int) -> int:
    return zlib.crc32(f"{seed}/{name}/{severity}".encode())  # stable across processes, unlike hash()


# --- noise --------------------------------------------------------------------------------------------------------


def gaussian_noise(x, std, generator):
    return x + torch.randn(x.shape, generator=generator) * std


def shot_noise(x, photons, generator):
    return torch.poisson(x * photons, generator=generator) / photons


def impulse_noise(x, amount, generator):
    hit = torch.rand(x.shape, generator=generator) < amount
    salt = torch.rand(x.shape, generator=generator) < 0.5
    return torch.where(hit, salt.float(), x)


# --- blur ---------------------------------------------------------------------------------------------------------


def _convolve(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Each channel convolved with a 2-D kernel (odd size), borders padded by `mode`."""
    kh, kw = kernel.shape
    n, c, h, w = x.shape
    padded = F.pad(x.reshape(n * c, 1, h, w), (kw // 2, kw // 2, kh // 2, kh // 2), mode=mode)
    return F.conv2d(padded, kernel.flip(0, 1).view(1, 1, kh, kw).to(x.dtype)).view(n, c, h, w)


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    radius = max(int(truncate * sigma + 0.5), 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights /= weights.sum()
    return torch.outer(weights, weights).float()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian filter (truncated at 4 sigma), edges repeated."""
    return _convolve(x, _gaussian_kernel(sigma), "replicate")


def defocus_blur(x, constants, generator):
    radius, alias_blur = constants
    offsets = torch.arange(-8, 9, dtype=torch.float32)
    disk = ((offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2) <= radius**2).float()
    disk /= disk.sum()
    # anti-alias the disk with a 3x3 Gaussian of `alias_blur`, then blur the image with it
    taps = torch.exp(-(torch.arange(-1.0, 2.0) ** 2) / (2 * alias_blur**2))
    smooth = torch.outer(taps, taps) / taps.sum() ** 2
    kernel = _convolve(disk.view(1, 1, 17, 17), smooth, "reflect")[0, 0]
    return _convolve(x, kernel, "reflect")


def glass_blur(x, constants, generator):
    sigma, delta, rounds = constants
    x = (gaussian_blur(x, sigma).clamp(0, 1) * 255).floor() / 255  # CIFAR-10-C rounds to 8 bits between the steps
    n, _, h, w = x.shape
    rows, columns = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    interior = torch.zeros(h, w, dtype=torch.bool)
    interior[delta + 1 :, delta + 1 :] = True  # rows and columns delta + 1 .. size - delta, as CIFAR-10-C visits
    interior[h - delta + 1 :, :] = interior[:, w - delta + 1 :] = False
    for _ in range(rounds):
        # CIFAR-10-C's loop means to swap each pixel with a neighbour up to `delta` away (offsets -delta .. delta-1),
        # but its NumPy "swap" assigns through views and so copies: every visited pixel takes its neighbour's value,
        # read before that neighbour is visited. Its released images are made that way, so this is too.
        dy = torch.randint(-delta, delta, (n, h, w), generator=generator)
        dx = torch.randint(-delta, delta, (n, h, w), generator=generator)
        source = (rows + torch.where(interior, dy, 0)) * w + columns + torch.where(interior, dx, 0)
        x = x.flatten(2).gather(2, source.view(n, 1, h * w).expand(-1, x.shape[1], -1)).view_as(x)
    return gaussian_blur(x, sigma)


def motion_blur_batch(x: torch.Tensor, radius: int, sigma: float, angles: torch.Tensor) -> torch.Tensor:
    """ImageMagick's motion blur, one angle (degrees) per image: each output pixel is a one-sided Gaussian-weighted
    (sigma) mean of the 2 * radius + 1 pixels behind it along the line at that angle, edges repeated."""
    n, c, h, w = x.shape
    taps = torch.arange(2 * radius + 1, dtype=torch.float64)
    weights = torch.exp(-(taps**2) / (2 * sigma**2))
    weights /= weights.sum()
    radians = angles.double() * math.pi / 180
    rows, columns = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    flat = x.flatten(2)
    out = torch.zeros_like(x)
    for tap, weight in zip(taps.tolist(), weights.tolist(), strict=True):
        dy = (tap * torch.sin(radians)).round().long().view(n, 1, 1)
        dx = (tap * torch.cos(radians)).round().long().view(n, 1, 1)
        index = ((rows + dy).clamp(0, h - 1) * w + (columns + dx).clamp(0, w - 1)).view(n, 1, h * w)
        out += weight * flat.gather(2, index.expand(n, c, h * w)).view(n, c, h, w)
    return out


def motion_blur(x, constants, generator):
    radius, sigma = constants
    angles = torch.rand(len(x), generator=generator) * 90 - 45
    return motion_blur_batch(x, radius, sigma, angles)


def clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """The centre of the image magnified by `factor` (bilinear), cut back to the image's size."""
    h = x.shape[-1]
    crop = math.ceil(h / factor)
    top = (h - crop) // 2
    size = round(crop * factor)
    zoomed = F.interpolate(x[..., top : top + crop, top : top + crop], size=(size, size), mode="bilinear")
    trim = (size - h) // 2
    return zoomed[..., trim : trim + h, trim : trim + h]


def zoom_blur(x, largest, generator):
    factors = [1 + k / 100 for k in range(round((largest - 1) * 100))]
    total = x.clone()
    for factor in factors:
        total += clipped_zoom(x, factor)
    return total / (len(factors) + 1)


# --- weather ------------------------------------------------------------------------------------------------------


def snow(x, constants, generator):
    mean, std, zoom, threshold, radius, sigma, kept = constants
    n, _, h, w = x.shape
    flakes = torch.randn((n, 1, h, w), generator=generator) * std + mean
    flakes = clipped_zoom(flakes, zoom)
    flakes = torch.where(flakes < threshold, 0.0, flakes).clamp(0, 1)
    flakes = (flakes * 255).floor() / 255  # an 8-bit layer, as CIFAR-10-C's
    angles = torch.rand(n, generator=generator) * 90 - 135
    streaks = motion_blur_batch(flakes, radius, sigma, angles)
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) * 1.5 + 0.5
    x = kept * x + (1 - kept) * torch.maximum(x, grey)
    return x + streaks + streaks.flip(2, 3)


def plasma_fractal(n: int, size: int, decay: float, generator: torch.Generator) -> torch.Tensor:
    """n diamond-square height maps (size a power of two), each scaled to [0, 1]: `decay` divides the random
    wiggle at every finer level, so a smaller decay gives rougher fog."""
    grid = torch.zeros(n, size, size, dtype=torch.float64)
    step, wiggle = size, 100.0

    def wiggled(values: torch.Tensor) -> torch.Tensor:
        return values / 4 + wiggle * (torch.rand(values.shape, generator=generator, dtype=torch.float64) * 2 - 1)

    while step >= 2:
        half = step // 2
        corners = grid[:, ::step, ::step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        grid[:, half::step, half::step] = wiggled(squares)
        centres, corners = grid[:, half::step, half::step], grid[:, ::step, ::step]
        left = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        grid[:, ::step, half::step] = wiggled(left)
        top = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        grid[:, half::step, ::step] = wiggled(top)
        step, wiggle = half, wiggle / decay
    low = grid.flatten(1).amin(1).view(n, 1, 1)
    grid = grid - low
    return (grid / grid.flatten(1).amax(1).clamp_min(1e-12).view(n, 1, 1)).float()


def fog(x, constants, generator):
    strength, decay = constants
    n, _, h, w = x.shape
    size = 1 << max(h, w - 1).bit_length()
    haze = plasma_fractal(n, size, decay, generator)[:, None, :h, :w]
    peak = x.flatten(1).amax(1).view(n, 1, 1, 1)
    return (x + strength * haze) * peak / (peak + strength)


# --- digital ------------------------------------------------------------------------------------------------------


def brightness(x, amount, generator):
    # In HSV, hue and saturation fixed, every channel is proportional to the value V = max(R, G, B): raising V
    # scales the pixel (a black pixel, of no hue, becomes grey).
    value = x.amax(dim=1, keepdim=True)
    brighter = (value + amount).clamp(max=1)
    return torch.where(value > 0, x * brighter / value.clamp_min(1e-12), brighter.expand_as(x))


def contrast(x, factor, generator):
    means = x.mean(dim=(2, 3), keepdim=True)
    return (x - means) * factor + means


def elastic_transform(x, constants, generator):
    alpha, sigma, jitter = constants
    n, _, h, w = x.shape
    # a random affine map moving three points around the centre by up to `jitter` pixels
    centre, arm = torch.tensor([h // 2, w // 2], dtype=torch.float64), min(h, w) // 3
    source = torch.stack([centre + arm, centre + torch.tensor([arm, -arm]), centre - arm]).flip(1)  # (x, y)
    target = source + (torch.rand((n, 3, 2), generator=generator, dtype=torch.float64) * 2 - 1) * jitter
    affine = _affine_from_points(target, source)  # output pixel -> where it is read in the input
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, -1, 3)
    read = (points @ affine.transpose(1, 2)).view(n, h, w, 2)
    x = _sample(x, read)
    # then a smooth random displacement field of scale `alpha`
    if alpha > 0:
        field = torch.rand((n, 2, h, w), generator=generator, dtype=torch.float32) * 2 - 1
        field = _convolve(field, _gaussian_kernel(sigma, truncate=3.0), "reflect") * alpha
        grid = torch.stack([xs, ys], dim=-1).float().expand(n, h, w, 2) + field.permute(0, 2, 3, 1).flip(-1)
        x = _sample(x, grid.double())
    return x


def _affine_from_points(frm: torch.Tensor, to: torch.Tensor) -> torch.Tensor:
    """N x 2 x 3 affine maps taking the three points `frm` (N x 3 x 2) to `to` (3 x 2)."""
    ones = torch.ones(frm.shape[0], 3, 1, dtype=frm.dtype)
    solution = torch.linalg.solve(torch.cat([frm, ones], dim=2), to.expand(frm.shape[0], 3, 2))
    return solution.transpose(1, 2)


def _sample(x: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of x at pixel coordinates `where` (N x H x W x 2, as x, y), borders mirrored."""
    h, w = x.shape[-2:]
    grid = torch.stack([where[..., 0] / (w - 1), where[..., 1] / (h - 1)], dim=-1) * 2 - 1
    return F.grid_sample(x, grid.float(), mode="bilinear", padding_mode="reflection", align_corners=True)


def _per_image(x: torch.Tensor, change: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
    out = []
    for image in (x.clamp(0, 1) * 255).to(torch.uint8):
        changed = change(Image.fromarray(image.permute(1, 2, 0).numpy()))
        out.append(torch.from_numpy(np.asarray(changed.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1))
    return torch.stack(out).float() / 255


def pixelate(x, factor, generator):
    h, w = x.shape[-2:]
    small = (int(w * factor), int(h * factor))
    return _per_image(x, lambda im: im.resize(small, Image.Resampling.BOX).resize((w, h), Image.Resampling.BOX))


def jpeg_compression(x, quality, generator):
    def compress(image: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        return Image.open(buffer)

    return _per_image(x, compress)


_FUNCTIONS = {name: globals()[name] for name in CORRUPTIONS}
