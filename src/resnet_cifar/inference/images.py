"""Image files of any common format, size and mode as CIFAR-sized uint8 tensors: the first frame, turned upright by its
EXIF tag, transparency composited onto white, 16-bit and float scaled to 8 bits, the centred square resized to 32x32
(Lanczos). Decoding is bounded before it starts: by pixels (Pillow's bomb limit, checked from the header) and by
decoded bytes for every mode; big images are reduced before any copy is made, JPEGs by the decoder itself. Every
failure is an ImageError naming the file."""

from __future__ import annotations

import io
import stat
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from resnet_cifar.errors import ImageError

FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # width x height above which a file is refused unread (Pillow's bomb limit)
MAX_SIDE = 65_535  # the largest side a JPEG can have
SIZE = 32
DRAFT_SIDE = 256  # a big JPEG is decoded at the smallest scale that keeps at least this many pixels per side
MAX_DECODED_BYTES = 2**30  # the memory one decoded image may take (a 16-bit PNG costs twice its pixels, RGB four)

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently half-grey


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, compositing transparency onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _eight_bit(np.asarray(image, dtype=np.float64), image.mode)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _eight_bit(array: np.ndarray, mode: str, peak: float | None = None) -> Image.Image:
    """A 16-bit, 32-bit or float grey image's values as 8-bit grey: 16-bit scaled from 65535 where any value passes
    255 (else taken as 8-bit values), floats from 1.0 where none passes it (`peak`: the largest value, if known)."""
    peak = array.max(initial=0) if peak is None else peak
    top = 65535.0 if mode.startswith("I") and peak > 255 else 255.0
    if mode == "F" and peak <= 1.0:
        top = 1.0
    return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def center_square(image: Image.Image) -> Image.Image:
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def to_cifar_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image (any mode, any size) -> 3 x 32 x 32 uint8 tensor by the rule above."""
    square = center_square(_to_rgb(image))
    small = square.resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(small, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def as_pixels(images: torch.Tensor) -> torch.Tensor:
    """Images N x 3 x H x W as uint8 pixels, from uint8 (as load_image gives them) or from floats in [0, 1] (as
    torchvision's ToTensor gives them); ValueError for anything else (normalised floats, [0, 255] floats), which
    would otherwise be classified as noise at full confidence."""
    if images.dtype == torch.uint8:
        return images
    return (as_unit_floats(images) * 255).round().to(torch.uint8)


def as_unit_floats(images: torch.Tensor) -> torch.Tensor:
    """Images as floats in [0, 1]: uint8 pixels divided by 255, floats checked to be in [0, 1] (ValueError else)."""
    if images.dtype == torch.uint8:
        return images.float() / 255
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 pixels or floats in [0, 1], got {images.dtype}")
    if images.numel() and not (images.min() >= 0 and images.max() <= 1):
        raise ValueError(
            "float images must be scaled to [0, 1] (got values from "
            f"{float(images.min()):.3g} to {float(images.max()):.3g}); pass uint8 pixels, or divide by 255"
        )
    return images


def not_a_file(path: Path) -> str | None:
    """Why `path` cannot be read as an image file (no such file, a link loop, a named pipe, a device, a folder), in
    words; None for a regular file. Checked before opening: a FIFO or /dev/zero would block or never end."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "broken symbolic link" if path.is_symlink() else "no such file"
    except OSError as error:  # ELOOP (a symbolic link loop), EACCES, ENAMETOOLONG...
        return f"cannot be read ({error.strerror or error})"
    if stat.S_ISREG(mode):
        return None
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket"}
    kind = next((name for test, name in kinds.items() if test(mode)), "a device")
    return f"{kind}, not an image file"


def load_image(path: Path | str) -> torch.Tensor:
    """Read one image file as a 3 x 32 x 32 uint8 tensor, or raise ImageError with a clear reason."""
    path = Path(path)
    problem = not_a_file(path)
    if problem:
        raise ImageError(f"{path}: {problem}")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file")
    return _decode(path, path)


def decode_image(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """The same rule for an image held in memory (an upload), named `name` in errors; nothing touches the disk.
    `max_pixels`: images larger than this (width x height, from the header) are refused unread."""
    if not data:
        raise ImageError(f"{name}: empty file")
    return _decode(io.BytesIO(data), name, max_pixels)


def decoded_bytes(image: Image.Image) -> int:
    """The bytes Pillow holds for `image` decoded (RGB is stored as 4 bytes a pixel, 16-bit grey as 2)."""
    per_pixel = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "LA": 4, "PA": 4}.get(image.mode, 4)
    return image.size[0] * image.size[1] * per_pixel


def _reduced(image: Image.Image) -> Image.Image:
    """A big decoded image shrunk at once to at least DRAFT_SIDE pixels on its short side (what JPEG's draft does while
    decoding), before any copy of it in another mode is made: an integer box filter, in numpy for 16-bit images
    (which Pillow cannot reduce), nearest for palette images (their colours are looked up after); so a 177-megapixel
    16-bit PNG costs its decoded bytes once, not a float64 copy and five more."""
    factor = min(image.size) // DRAFT_SIDE
    if factor < 2:
        return image
    if image.mode == "1":
        image = image.convert("L")  # same bytes per pixel; reduce() works on 8-bit modes
    if image.mode.startswith("I;16"):
        return _box_mean_16bit(image, factor)
    if image.mode in ("P", "PA"):
        return image.resize((image.size[0] // factor, image.size[1] // factor), Image.Resampling.NEAREST)
    try:
        return image.reduce(factor)
    except ValueError:  # a mode reduce() does not take: converted whole (within the decoded-bytes limit)
        return image


def _box_mean_16bit(image: Image.Image, factor: int) -> Image.Image:
    """The mean of each `factor` x `factor` block of a 16-bit grey image, as 8-bit grey, read one block row at a time
    (no full-size copy of the pixels is ever made)."""
    rows, cols = image.size[1] // factor, image.size[0] // factor
    out, peak = np.empty((rows, cols), dtype=np.float32), 0
    for row in range(rows):
        strip = np.asarray(image.crop((0, row * factor, cols * factor, (row + 1) * factor)))
        out[row] = strip.reshape(factor, cols, factor).mean(axis=(0, 2), dtype=np.float32)
        peak = max(peak, int(strip.max(initial=0)))
    return _eight_bit(out, image.mode, peak)


def _decode(source: Path | io.BytesIO, path: Path | str, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    max_bytes = min(MAX_DECODED_BYTES, max_pixels * 4)
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS (89 MP) and refuses above twice that: our limit is checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source, formats=FORMATS) as image:
                width, height = image.size
                if width < 1 or height < 1 or width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
                    raise ImageError(f"{path}: absurd dimensions {width}x{height} (limit {MAX_PIXELS:,} pixels)")
                if width * height > max_pixels:
                    raise ImageError(
                        f"{path}: {width}x{height} is {width * height / 1e6:.1f} megapixels; "
                        f"at most {max_pixels / 1e6:.1f} are decoded here"
                    )
                image.seek(0)  # first frame of animations
                if image.format == "JPEG":
                    image.draft("RGB", (DRAFT_SIDE, DRAFT_SIDE))
                if decoded_bytes(image) > max_bytes:
                    mib = decoded_bytes(image) / 2**20
                    raise ImageError(f"{path}: {width}x{height} {image.mode} would take {mib:,.0f} MiB decoded; at "
                                     f"most {max_bytes / 2**20:,.0f} MiB are decoded here")  # fmt: skip
                image.load()
                return to_cifar_tensor(ImageOps.exif_transpose(_reduced(image)))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image, or not one of {', '.join(FORMATS)}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: absurd dimensions (decompression bomb refused)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as error:
        reason = (
            "truncated or corrupted"
            if "truncated" in str(error) or isinstance(error, (EOFError, SyntaxError))
            else "cannot be decoded"
        )
        raise ImageError(f"{path}: {reason} ({error})") from None
