"""The weights shipped inside the package: small, offline, and as accurate as their model card says."""

import json
from pathlib import Path

import pytest
import torch

from repo_scripts import load_script
from resnet_cifar.data.splits import balanced_subset
from resnet_cifar.evaluate.metrics import accuracy
from resnet_cifar.inference.calibration import calibration_report
from resnet_cifar.inference.loading import DEFAULT_WEIGHTS, WEIGHTS_DIR, load_model, load_pretrained, shipped_weights
from resnet_cifar.inference.tta import predict_logits, predict_logits_and_single_view
from resnet_cifar.models import count_parameters, create_model
from resnet_cifar.runtime import choose_runtime

SHIPPED = shipped_weights()


def test_the_default_and_every_paper_resnet_shipped_are_listed():
    assert "robust" in SHIPPED
    assert set(SHIPPED) <= {"robust", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_small_and_carry_a_model_card(name):
    path = WEIGHTS_DIR / f"{name}.safetensors"
    assert path.stat().st_size <= 5_000_000
    card = json.loads(path.with_suffix(".json").read_text())
    for key in ("command", "config", "seed", "date", "machine", "parameters", "calibration", "normalization"):
        assert key in card, key
    assert {"no_tta", "tta_flip"} <= set(card["test_accuracy"]) and card["test_accuracy"]["images"] == 10_000
    assert card["calibration"]["test"]["ece_after"] <= card["calibration"]["test"]["ece_before"]
    if name != "robust":  # a paper ResNet: the architecture by name, unchanged, stored small at no cost
        assert card["model"] == name and card["model_options"] == {}
        check = card["storage_check"]  # the whole test set, before and after the cast to the stored precision
        assert check["stored_no_tta"] == card["test_accuracy"]["no_tta"]
        assert (
            abs(check["stored_no_tta"] - check["trained_float32_no_tta"]) <= 0.001
            and check["predictions_changed"] <= 10
        )


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_reproduce_their_card_on_a_test_subset(name, cifar_test):
    """Single view, flip TTA and calibration on the card's seeded subset (1,000 images, fewer for deeper nets: see
    tools/ship_weights.py), recomputed from the shipped file as any user loads it (half-precision storage
    included): the card describes exactly these tensors."""
    card = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    check = card["subset_check"]
    chosen = balanced_subset(cifar_test.labels, check["images"], check["seed"])
    images, labels = cifar_test.images[chosen], cifar_test.labels[chosen]
    loaded = load_pretrained(name, device="cpu")  # no network needed
    fp32 = choose_runtime("cpu", "fp32")  # as the card was measured
    options = {"runtime": fp32, "batch_size": 250, "normalization": loaded.normalization}
    flip, single = predict_logits_and_single_view(loaded.model, images, tta=1, **options)  # one pass for both
    two_images = 2 / check["images"]  # fp32 kernels' rounding may flip an image or two
    assert accuracy(single, labels) == pytest.approx(check["no_tta"], abs=two_images)
    assert accuracy(flip, labels) == pytest.approx(check["tta_flip"], abs=two_images)
    assert calibration_report(flip, labels, loaded.temperature)["ece_after"] == pytest.approx(
        check["ece_after"], abs=0.003
    )


def test_shipped_weights_are_robust_as_their_card_says(cifar_test):
    """The card carries the corruption benchmark of these weights (full test set) and a spot check: one corruption
    and severity on a seeded sample, recomputed here from the shipped file with the benchmark's own code."""
    from resnet_cifar.data.corruptions import corrupt
    from resnet_cifar.evaluate.robustness import sample

    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    robustness = card["robustness"]
    assert robustness["images"] == len(cifar_test.labels) == 10_000
    assert robustness["relative_drop"] == pytest.approx(
        1 - robustness["mean_corruption_accuracy"] / robustness["clean_accuracy"]
    )
    assert set(robustness["per_family"]) == {"noise", "blur", "weather", "digital"}
    check = robustness["spot_check"]
    chosen = sample(check["images"], len(cifar_test.labels), check["seed"])
    images = corrupt(cifar_test.images[chosen], check["corruption"], check["severity"], check["seed"])
    loaded = load_model(None, device="cpu", precision="fp32")
    fp32 = choose_runtime("cpu", "fp32")
    logits = predict_logits(
        loaded.model, images, tta=1, runtime=fp32, batch_size=250, normalization=loaded.normalization
    )
    measured = (logits.argmax(1) == cifar_test.labels[chosen]).double().mean().item()
    assert measured == pytest.approx(check["accuracy"], abs=0.004)  # 2 of 500 images: rounding of fp32 kernels


def test_shipped_weights_load_by_name_and_unknown_names_are_listed(tmp_path, monkeypatch):
    from resnet_cifar.errors import CheckpointError
    from resnet_cifar.inference.loading import resolve_weights

    monkeypatch.chdir(tmp_path)
    assert resolve_weights("robust") == DEFAULT_WEIGHTS
    (tmp_path / "robust").mkdir()  # a folder of that name here is what the user means
    with pytest.raises(CheckpointError, match="run folder"):
        resolve_weights("robust")
    with pytest.raises(CheckpointError, match="shipped: resnet110"):
        resolve_weights("resnet1001")


def test_pretrained_module_normalises_inside_and_calibrates(cifar_test):
    """What torch.hub hands out: float images in [0, 1] in, the same logits as the product's own path."""
    from resnet_cifar.inference import Pretrained

    loaded = load_pretrained("robust", device="cpu", precision="fp32")
    module = Pretrained(loaded)
    images = cifar_test.images[:16]
    expected = predict_logits(loaded.model, images, tta=0, runtime=choose_runtime("cpu", "fp32"),
                              normalization=loaded.normalization, channels_last=False)  # fmt: skip
    with torch.no_grad():
        logits = module(images.float() / 255)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    probabilities = module.probabilities(images.float() / 255)
    torch.testing.assert_close(probabilities, torch.softmax(expected / loaded.temperature, 1), rtol=1e-4, atol=1e-5)


REPO = Path(__file__).resolve().parents[2]
PAPER = [name for name in SHIPPED if name != "robust"]


def test_torch_hub_builds_each_paper_resnet_offline():
    for depth in (20, 32, 44, 56, 110):
        net = torch.hub.load(str(REPO), f"resnet{depth}", source="local", pretrained=False)
        assert count_parameters(net) == count_parameters(create_model(f"resnet{depth}"))


@pytest.mark.parametrize("name", PAPER)
def test_torch_hub_loads_the_shipped_paper_resnets_with_their_card(name):
    module = torch.hub.load(str(REPO), name, source="local", pretrained=True)
    card = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    assert module.card["test_accuracy"] == card["test_accuracy"] and module.temperature > 0
    assert module(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_deeper_nets_are_checked_on_fewer_images_at_no_more_cost():
    """tools/ship_weights.py sizes each card's subset check so that the suite's recomputation of it stays cheap."""
    from resnet_cifar.models.summary import count_macs

    ship_weights = load_script("tools/ship_weights.py")
    nets = {name: create_model(name) for name in ("resnet20", "resnet32", "resnet56", "resnet110")}
    sizes = {name: ship_weights.subset_size(net) for name, net in nets.items()}
    assert sizes["resnet20"] == sizes["resnet32"] == 1000
    assert 200 <= sizes["resnet110"] < sizes["resnet56"] < 1000 and all(size % 10 == 0 for size in sizes.values())
    for name, net in nets.items():
        assert sizes[name] * count_macs(net) <= ship_weights.SUBSET_BUDGET_MACS
