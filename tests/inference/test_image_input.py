"""Image files as users have them: any size, mode and orientation, links and things that are not files, decoded
within bounded memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from commands import cli_code, run_cli
from resnet_cifar.inference.classify import expand_inputs
from resnet_cifar.inference.images import load_image


def test_predict_turns_phone_photos_upright(tmp_path):
    upright = Image.new("RGB", (64, 48), "white")
    upright.paste((200, 30, 30), (0, 0, 64, 12))  # a red band along the top
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways, as a phone does ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90 degrees clockwise to display"
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright.save(tmp_path / "upright.jpg", quality=95)
    difference = (load_image(tmp_path / "phone.jpg").float() - load_image(tmp_path / "upright.jpg").float()).abs()
    assert difference.mean() < 3  # JPEG noise only; read sideways they differ by ~100 on the band


def test_a_60_megapixel_camera_jpeg_is_read(tmp_path):
    photo = Image.new("RGB", (9504, 6336), (30, 90, 200))
    photo.paste((250, 250, 250), (0, 0, 9504, 3168))
    photo.save(tmp_path / "camera.jpg", quality=80)
    del photo
    started = time.perf_counter()
    tensor = load_image(tmp_path / "camera.jpg")
    assert time.perf_counter() - started < 2.0  # decoded at 1/8 scale by the JPEG decoder
    assert tensor.shape == (3, 32, 32) and tensor[:, 2, 16].tolist() == pytest.approx([250, 250, 250], abs=6)


def test_links_in_a_predicted_folder_are_reported_in_their_places(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "z.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    entries = expand_inputs([str(tmp_path)])
    assert [(Path(str(e.path if hasattr(e, "path") else e)).name, getattr(e, "error", None)) for e in entries] == [
        ("a.png", None),
        ("gone.png", "broken symbolic link"),
        ("loop", "symbolic link to a folder: not followed (name it to include it)"),
        ("z.png", None),
    ]


PEAK = """
import resource, sys
from PIL import Image
from resnet_cifar.inference.images import load_image
Image.new("1", ({side}, {side})).save(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
load_image(sys.argv[1])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_decoding_a_huge_one_bit_png_costs_its_bytes_once(tmp_path):
    """A 17 KB PNG of 12,000 x 12,000 one-bit pixels: 144 MB decoded, reduced at once: it costs the decoded bytes
    and one 8-bit copy, not an RGB copy at full size."""
    path = tmp_path / "huge.png"
    result = subprocess.run(
        [sys.executable, "-c", PEAK.format(side=12_000), str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert path.stat().st_size < 50_000
    assert int(result.stdout) < 450, f"decoding took {result.stdout.strip()} MB more"


def test_predict_names_what_is_not_a_file(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    os.mkfifo(tmp_path / "fifo")
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    result = run_cli("predict", str(tmp_path / "loop"), str(tmp_path / "fifo"), "/dev/zero", str(folder), "--json")
    answers = {Path(entry["file"]).name: entry["error"] for entry in json.loads(result.stdout)}
    assert "symbolic links" in answers["loop"]
    assert "named pipe" in answers["fifo"] and "named pipe" in answers["pipe"]
    assert "device" in answers["zero"]


MADE = """
import resource, sys
import numpy as np
from PIL import Image
from resnet_cifar.inference.images import load_image
kind, side, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if kind == "grey16":
    pixels = np.zeros((side, side), dtype=np.uint16)
    pixels[::7, :] = 40_000
    Image.fromarray(pixels).save(path)
else:
    palette = Image.new("P", (side, side), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.save(path, transparency=0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = load_image(path)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, int(image.float().mean()))
"""


@pytest.mark.parametrize(("kind", "side", "limit_mb"), [("grey16", 13_300, 400), ("palette", 13_000, 250)])
def test_sixteen_bit_and_transparent_palette_pngs_cost_their_decoded_bytes_once(kind, side, limit_mb, tmp_path):
    """A few hundred KB of PNG that decode to 350 MB of 16-bit grey (177 megapixels) or 170 MB of palette with
    transparency: read within about their decoded size (they once cost 5.8 and 3.4 GB), and read right (16-bit
    values scaled from 65535, the transparent palette colour composited onto white)."""
    path = tmp_path / f"{kind}.png"
    result = subprocess.run([sys.executable, "-c", MADE, kind, str(side), str(path)], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    grown, mean = map(int, result.stdout.split())
    assert path.stat().st_size < 400_000 and grown < limit_mb, f"decoding took {grown} MB more"
    # transparent everywhere: white; one row in seven at 40,000 of 65,535: about 22 of 255 on average
    assert mean == 255 if kind == "palette" else 15 < mean < 30


def test_an_image_over_the_decoded_bytes_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    from resnet_cifar.errors import ImageError
    from resnet_cifar.inference import images

    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 200_000)  # 300 x 200 RGB is 240,000 bytes decoded
    with pytest.raises(ImageError, match="MiB decoded; at most"):
        images.load_image(tmp_path / "big.png")


def test_the_api_takes_uint8_pixels_or_floats_in_0_1_and_refuses_the_rest():
    import torch

    from resnet_cifar.inference.classify import classify
    from resnet_cifar.inference.loading import Pretrained, load_pretrained

    loaded = load_pretrained(device="cpu", precision="fp32")
    pixels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert classify(loaded.model, pixels) == classify(loaded.model, pixels.float() / 255)
    hub = Pretrained(loaded)
    assert torch.allclose(hub(pixels), hub(pixels.float() / 255))
    for wrong in (pixels.float(), (pixels.float() / 255 - 0.5) / 0.25):  # [0, 255] floats, normalised floats
        with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
            classify(loaded.model, wrong)
        with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
            hub(wrong)


def test_an_empty_name_is_refused_not_read_as_this_folder(tmp_path, capsys):
    assert cli_code("predict", "", "--device", "cpu") == 2
    assert "an empty name is no image, folder or pattern" in capsys.readouterr().err
