"""Class-activation maps (Grad-CAM through Captum): shapes, classes, where they point, and the two pictures."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from resnet_cifar.cli import main
from resnet_cifar.data.normalization import normalize
from resnet_cifar.errors import ConfigError
from resnet_cifar.inference.explain import default_layer, explain, find_layer
from resnet_cifar.models import create_model, list_models, model_spec

# a small model of every family and block kind (the maps only need the `stages` every registered model has)
MODELS = (
    "fastnet",
    "resnet9",
    "resnet20",
    "plain20",
    "preact_resnet20",
    "preact_resnet164",
    "resnet18",
    "resnet50",
    "preact_resnet18",
)


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_every_family_is_covered():
    assert {model_spec(name).family for name in MODELS} == {model_spec(name).family for name in list_models()}


@pytest.mark.parametrize("name", MODELS)
def test_maps_have_the_input_size_and_differ_between_classes(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    explanation = explain(model, random_images(3), top=2)
    assert explanation.layer == default_layer(model) == f"stages.{len(model.stages) - 1}"
    assert explanation.maps.shape == (3, 2, 32, 32)
    assert explanation.maps.min() >= 0 and explanation.maps.max() <= 1
    assert not torch.equal(explanation.maps[:, 0], explanation.maps[:, 1])
    assert torch.allclose(explanation.probabilities.sum(1), torch.ones(3))
    assert (explanation.classes[:, 0] == explanation.probabilities.argmax(1)).all()


class RedDetector(nn.Module):
    """Class 0's evidence is red light, class 1's its absence: Grad-CAM of class 0 must light up where red is."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(3, 1, kernel_size=1, bias=False)
        conv.weight.data[:] = torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1)
        self.stages = nn.Sequential(nn.Sequential(conv, nn.ReLU()))
        self.fc = nn.Linear(1, 2)
        self.fc.weight.data[:] = torch.tensor([[1.0], [-1.0]])
        self.fc.bias.data.zero_()

    def forward(self, x):
        return self.fc(self.stages(x).mean(dim=(2, 3)))


def test_the_map_points_at_the_quadrant_holding_the_evidence():
    images = torch.full((4, 3, 32, 32), 120, dtype=torch.uint8)
    corners = [(0, 0), (0, 16), (16, 0), (16, 16)]
    for image, (top, left) in zip(images, corners, strict=True):
        image[0, top : top + 16, left : left + 16] = 255  # a red square in one quadrant
    explanation = explain(RedDetector(), images, top=1)
    assert explanation.classes[:, 0].tolist() == [0, 0, 0, 0]
    for maps, (top, left) in zip(explanation.maps[:, 0], corners, strict=True):
        inside = maps[top : top + 16, left : left + 16].mean()
        assert inside > 3 * (maps.sum() - maps[top : top + 16, left : left + 16].sum()) / (32 * 32 - 256)


def test_masking_the_hottest_region_costs_more_than_the_coldest(cifar_test):
    """The shipped weights on real test images: covering the map's hottest 8x8 cell with the mean colour lowers the
    predicted class's score far more than covering its coldest one."""
    from resnet_cifar.inference.loading import load_model

    loaded = load_model(None, device="cpu", precision="fp32")
    images = cifar_test.images[:48]
    explanation = explain(loaded.model, images, top=1)
    cells = nn.functional.avg_pool2d(explanation.maps[:, :1], 8).flatten(1)  # 4 x 4 cells of 8 x 8 pixels

    def score_after_masking(choice):
        masked = images.clone()
        for image, cell in zip(masked, choice.tolist(), strict=True):
            row, column = divmod(cell, 4)
            image[:, row * 8 : row * 8 + 8, column * 8 : column * 8 + 8] = torch.tensor([125, 123, 114]).view(3, 1, 1)
        with torch.no_grad():
            return loaded.model(normalize(masked)).gather(1, explanation.classes[:, :1])[:, 0]

    with torch.no_grad():
        base = loaded.model(normalize(images)).gather(1, explanation.classes[:, :1])[:, 0]
    hot, cold = base - score_after_masking(cells.argmax(1)), base - score_after_masking(cells.argmin(1))
    assert hot.mean() > 4 * cold.mean().clamp_min(0.01)
    assert (hot > cold).float().mean() > 0.6


def test_a_named_layer_and_a_wrong_one():
    model = create_model("resnet20").eval()
    explanation = explain(model, random_images(2), layer="stages.1")
    assert explanation.maps.shape == (2, 2, 32, 32) and explanation.layer == "stages.1"
    with pytest.raises(ConfigError, match=r"no layer 'stages.9'.*stages.0, stages.1, stages.2"):
        find_layer(model, "stages.9")


def test_maps_come_from_inside_inference_mode():
    model = create_model("resnet20").eval()
    with torch.inference_mode():
        explanation = explain(model, random_images(2))
    assert explanation.maps.shape == (2, 2, 32, 32) and explanation.maps.max() > 0


def test_predict_explain_and_plot_explain_draw_their_pictures(tmp_path, capsys):
    for i in range(2):
        Image.fromarray(random_images(1, seed=i)[0].permute(1, 2, 0).numpy()).save(tmp_path / f"img{i}.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    picture = tmp_path / "explain.png"
    code = main(["predict", str(tmp_path / "img0.png"), str(tmp_path / "img1.png"), str(tmp_path / "broken.png"),
                 "--explain", str(picture), "--device", "cpu"])  # fmt: skip
    assert code == 1  # the broken file is reported; the others are still predicted and drawn
    with Image.open(picture) as drawn:
        assert drawn.size[0] > 600 and drawn.size[1] > 400  # two rows of four panels
    capsys.readouterr()
    assert (
        main(["predict", str(tmp_path / "img0.png"), "--explain", str(picture)]) == 2
    )  # it exists: not without asking
    assert "exists; pass --force to replace it" in capsys.readouterr().err
    assert (
        main(["predict", str(tmp_path / "img0.png"), "--explain", str(picture), "--force", "--cam-layer", "nope"]) == 2
    )
    assert "no layer 'nope'" in capsys.readouterr().err


def test_plot_explain_adds_the_cam_grid(fake_cifar, tmp_path, capsys):
    from resnet_cifar.inference.loading import DEFAULT_WEIGHTS

    common = ["--data-dir", str(fake_cifar), "--output-dir", str(tmp_path), "--device", "cpu"]
    assert main(["plot", str(DEFAULT_WEIGHTS), "--explain", *common]) == 0
    with Image.open(tmp_path / "robust-pictures" / "inference_cam.png") as grid:
        assert grid.size[0] > 1000  # the 8-column grid of inference.png
    assert "inference_cam.png" in capsys.readouterr().out
