"""Using a trained model: image files of every kind, predict, export parity, the Python API."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from commands import run_cli
from resnet_cifar.errors import ImageError
from resnet_cifar.inference.classify import expand_inputs, predict_files
from resnet_cifar.inference.export import export_model
from resnet_cifar.inference.images import MAX_PIXELS, load_image, to_cifar_tensor
from resnet_cifar.models import create_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("fastnet", widths=(16, 32, 64), blocks=(1, 0, 1), stem_width=16).eval()


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("rgb.png", lambda: Image.new("RGB", (50, 40), (200, 10, 10))),
        ("rgba.png", lambda: Image.new("RGBA", (32, 32), (0, 0, 255, 0))),
        ("gray.jpg", lambda: Image.new("L", (64, 64), 128)),
        ("palette.gif", lambda: Image.new("P", (20, 30), 3)),
        ("gray16.png", lambda: Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16))),
        ("photo.webp", lambda: Image.new("RGB", (100, 60), (0, 200, 0))),
        ("bitmap.bmp", lambda: Image.new("1", (33, 33), 1)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (40, 40), (0, 0, 0, 0))),
    ],
)
def test_every_format_and_mode_becomes_a_32x32_rgb_tensor(tmp_path, name, make):
    tensor = load_image(_save(make(), tmp_path / name))
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.uint8


def test_the_documented_rule(tmp_path):
    transparent = load_image(_save(Image.new("RGBA", (32, 32), (0, 0, 255, 0)), tmp_path / "t.png"))
    assert transparent.min() == 255  # fully transparent -> the white background
    assert load_image(_save(Image.fromarray(np.full((8, 8), 65535, np.uint16)), tmp_path / "w.png")).min() == 255
    wide = Image.new("RGB", (300, 100), (255, 0, 0))
    wide.paste((0, 0, 255), (100, 0, 200, 100))  # the centre square is blue, the sides red
    tensor = to_cifar_tensor(wide)
    assert tensor[2].float().mean() > 250 and tensor[0].float().mean() < 5  # centred square crop, no squashing
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert load_image(tmp_path / "anim.gif")[0].float().mean() > 200  # the first frame (red)


def test_bad_files_are_reported_with_a_reason(tmp_path):
    raw = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(raw, format="PNG")
    (tmp_path / "truncated.png").write_bytes(raw.getvalue()[:60])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "image.tiff").write_bytes(b"")  # unsupported format (empty anyway)
    Image.new("RGB", (8, 8)).save(tmp_path / "real.tiff")
    cases = {
        "truncated.png": "truncated or corrupted",
        "empty.png": "empty file",
        "notes.txt": "not an image",
        "real.tiff": "not one of PNG",
    }
    for name, reason in cases.items():
        with pytest.raises(ImageError, match=reason):
            load_image(tmp_path / name)


def test_decompression_bomb_is_refused_from_its_header(tmp_path):
    # A 1-bit PNG of 20,000 x 20,000 pixels compresses to a few kilobytes.
    Image.new("1", (20_000, 20_000)).save(tmp_path / "bomb.png")
    assert MAX_PIXELS * 10 > 20_000 * 20_000
    with pytest.raises(ImageError, match="absurd dimensions"):
        load_image(tmp_path / "bomb.png")


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=4000),
    header=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\x00\x00\x00\x00WEBP"]),
)
def test_fuzzed_image_files_never_crash(tmp_path_factory, data, header):
    path = tmp_path_factory.mktemp("img") / "fuzz.img"
    path.write_bytes(header + data)
    try:
        tensor = load_image(path)
    except ImageError as error:
        assert str(path) in str(error)
        return
    assert tensor.shape == (3, 32, 32)


def test_predict_mixes_good_and_bad_files(tmp_path, model):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("RGB", (40, 40), (9, 9, 9)).save(folder / "a.png")
    Image.new("L", (40, 40), 9).save(folder / "b.jpg")
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (folder / "notes.txt").write_text("not a picture")
    results = predict_files(model, [str(folder), str(tmp_path / "missing.png"), str(folder / "*.jpg")], top_k=2)
    by_name = {Path(r.path).name: r for r in results}
    assert by_name["a.png"].top and len(by_name["a.png"].top) == 2
    assert by_name["b.jpg"].top is not None
    assert "truncated" in by_name["c.png"].error or "not an image" in by_name["c.png"].error
    assert by_name["missing.png"].error == "no such file or folder"
    assert by_name["notes.txt"].error.startswith("not an image")
    probabilities = [p for _, p in by_name["a.png"].top]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001


def test_expand_inputs_recurses_folders_and_globs(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".cache").mkdir()
    for name in ("x.png", "sub/y.JPG", "sub/z.txt", ".hidden.png", ".cache/w.png"):
        (tmp_path / name).write_bytes(b"")
    entries = expand_inputs([str(tmp_path), str(tmp_path / "**" / "*.png"), str(tmp_path / "*.gif")])
    names = [p.name if isinstance(p, Path) else p.error for p in entries]
    # a folder gives every visible file (z.txt too, so that it is reported rather than silently skipped)
    assert names == ["y.JPG", "z.txt", "x.png", "x.png", "no file matches"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity_on_real_test_images(tmp_path, cifar_test, fmt):
    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    with torch.no_grad():  # non-trivial batch norm statistics, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    images = cifar_test.images[:64].float() / 255
    from resnet_cifar.inference.export import Deployable

    expected = Deployable(model)(images).detach().numpy()
    path = export_model(model, fmt, tmp_path / f"model.{fmt}", metadata={"temperature": "0.5"})
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.get_modelmeta().custom_metadata_map["temperature"] == "0.5"
        got = session.run(None, {"images": images.numpy()})[0]
        got_odd = session.run(None, {"images": images[:7].numpy()})[0]  # another batch size
    else:
        files = {"metadata.json": ""}
        loaded = torch.jit.load(str(path), _extra_files=files)
        assert json.loads(files["metadata.json"])["temperature"] == "0.5"
        got = loaded(images).detach().numpy()
        got_odd = loaded(images[:7]).detach().numpy()
    assert np.abs(got - expected).max() <= 1e-4
    assert np.abs(got_odd - expected[:7]).max() <= 1e-4


def test_python_api_round_trip(tmp_path, cifar_test):
    """The README's Python API: create, save, load, predict a PIL image and a tensor batch, evaluate."""
    from resnet_cifar.checkpoint import save_checkpoint
    from resnet_cifar.evaluate import accuracy, predict_logits
    from resnet_cifar.inference import load_model
    from resnet_cifar.inference.classify import classify

    model = create_model("resnet20")
    save_checkpoint(
        tmp_path / "w.safetensors",
        {f"model.{k}": v for k, v in model.state_dict().items()},
        {"model": "resnet20", "model_options": {}},
    )
    loaded = load_model(tmp_path / "w.safetensors")
    pil = Image.fromarray(cifar_test.images[0].permute(1, 2, 0).numpy())
    top = classify(loaded.model, to_cifar_tensor(pil).unsqueeze(0), top_k=3)[0]
    assert len(top) == 3
    logits = predict_logits(loaded.model, cifar_test.images[:100], tta=1)
    assert logits.shape == (100, 10) and 0 <= accuracy(logits, cifar_test.labels[:100]) <= 1


def test_predict_cli_exit_code_and_json(tmp_path):
    Image.new("RGB", (32, 32), (250, 250, 250)).save(tmp_path / "ok.png")
    (tmp_path / "bad.txt").write_text("x")
    result = run_cli("predict", "ok.png", "bad.txt", "--json", cwd=tmp_path)
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert rows[0]["file"] == "ok.png" and len(rows[0]["top"]) == 3 and rows[1]["error"].startswith("not an image")


@pytest.mark.parametrize("tta", [0, 1, 2])
def test_one_pass_gives_the_tta_logits_and_the_plain_view_bit_for_bit(tta):
    """Training's last validation reads the single-view accuracy and fits the temperature on the TTA views from one
    pass: both must be exactly what the separate passes give."""
    from resnet_cifar.inference.tta import predict_logits, predict_logits_and_single_view

    torch.manual_seed(0)
    model = create_model("fastnet", widths=[8, 16, 16], stem_width=8).eval()
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8)
    averaged, plain = predict_logits_and_single_view(model, images, tta=tta, batch_size=5)
    assert torch.equal(averaged, predict_logits(model, images, tta=tta, batch_size=5))
    assert torch.equal(plain, predict_logits(model, images, tta=0, batch_size=5))
    assert tta == 0 or not torch.equal(averaged, plain)


def test_a_tta_share_gives_the_views_to_the_least_confident_images_only():
    from resnet_cifar.inference.tta import least_confident, predict_logits, predict_logits_and_single_view, view_count

    torch.manual_seed(0)
    model = create_model("fastnet", widths=[8, 16, 16], stem_width=8).eval()
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    full = predict_logits(model, images, tta=2, batch_size=7)
    averaged, plain = predict_logits_and_single_view(model, images, tta=2, batch_size=7, tta_share=0.25)
    assert torch.equal(plain, predict_logits(model, images, tta=0, batch_size=7))
    chosen = least_confident(plain, 0.25)
    confidence = plain.softmax(1).amax(1)
    rest = torch.ones(20, dtype=torch.bool)
    rest[chosen] = False
    assert len(chosen) == 5 and confidence[chosen].max() <= confidence[rest].min()
    assert torch.allclose(averaged[chosen], full[chosen], atol=1e-5)  # all six views, as the full pass
    assert torch.equal(averaged[rest], plain[rest])  # the rest: the single view
    assert [view_count(level) for level in (0, 1, 2)] == [1, 2, 6]
    assert torch.equal(predict_logits(model, images, tta=2, batch_size=7, tta_share=1.0), full)
    with pytest.raises(ValueError, match="tta_share"):
        predict_logits(model, images, tta=2, tta_share=0.0)
