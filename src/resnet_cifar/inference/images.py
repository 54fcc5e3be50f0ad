"""Read image files of any common format, size and mode into CIFAR-sized uint8 tensors.

The rule: the first frame (GIF, animated WebP); turned upright as its EXIF orientation says (phone photos are stored
sideways with a tag); transparency composited onto white; 16-bit and float images scaled to 8 bits; palette,
grayscale and CMYK converted to RGB; then the largest centred square is cropped and resized to 32x32 with Lanczos
filtering (antialiased), which keeps the aspect ratio of the object the way CIFAR-10 does.

Size: anything a camera makes is read. A JPEG is decoded at a reduced scale (1/2 to 1/8, by the decoder itself) when
that still leaves 256 pixels on its short side, so a 60-megapixel photo costs what a 1-megapixel one does. The limit
is Pillow's own decompression-bomb threshold, 2 x Image.MAX_IMAGE_PIXELS (179 megapixels; a 150 MP medium-format
back makes 151), checked from the header before anything is decoded.

Every failure is an ImageError naming the file: not an image, an unsupported format, an empty or truncated file,
or absurd dimensions.
"""

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

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently half-grey


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB, compositing transparency onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I") and array.max(initial=0) > 255 else 255.0
        if image.mode == "F" and array.max(initial=0) <= 1.0:
            top = 1.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


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


def _reduced(image: Image.Image) -> Image.Image:
    """A big decoded image shrunk at once by an integer box filter to at least DRAFT_SIDE pixels on its short side
    (what JPEG's draft does while decoding), before any copy of it in another mode is made: a 144-megapixel 1-bit
    PNG then costs its decoded bytes once, not five full-size copies."""
    factor = min(image.size) // DRAFT_SIDE
    if factor < 2:
        return image
    if image.mode == "1":
        image = image.convert("L")  # same bytes per pixel; reduce() works on 8-bit modes
    try:
        return image.reduce(factor)
    except ValueError:  # a mode reduce() does not take (palette, 16-bit): converted whole as before
        return image


def _decode(source: Path | io.BytesIO, path: Path | str, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
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
