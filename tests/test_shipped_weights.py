"""The weights shipped inside the package: small, offline, and as accurate as their model card says."""

import json

import pytest

from resnet_cifar.evaluate.calibration import calibration_report
from resnet_cifar.inference.loading import DEFAULT_WEIGHTS, load_model
from resnet_cifar.inference.tta import predict_logits
from resnet_cifar.runtime import choose_runtime


def test_shipped_weights_are_small_and_carry_a_model_card():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size <= 5_000_000
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    for key in ("command", "config", "seed", "date", "machine", "test_accuracy"):
        assert key in card, key
    assert {"no_tta", "tta_flip"} <= set(card["test_accuracy"])


def test_shipped_weights_reproduce_the_model_card(cifar_test):
    """Single view and flip TTA from two passes: TTA level 1 is the mean of the image's and its mirror's logits."""
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    loaded = load_model(None, device="cpu")  # no --weights: the shipped file, no network needed
    fp32 = choose_runtime("cpu", bf16=False)  # as the card was measured
    options = {"tta": 0, "runtime": fp32, "batch_size": 250, "channels_last": True}
    single = predict_logits(loaded.model, cifar_test.images, **options)
    mirrored = predict_logits(loaded.model, cifar_test.images.flip(3), **options)
    for key, logits in (("no_tta", single), ("tta_flip", (single + mirrored) / 2)):
        measured = (logits.argmax(1) == cifar_test.labels).double().mean().item()
        assert measured == pytest.approx(card["test_accuracy"][key], abs=0.001), key
    # the card's calibration (temperature from the validation split, flip TTA) is what these weights give
    calibrated = calibration_report((single + mirrored) / 2, cifar_test.labels, loaded.temperature)
    assert calibrated["ece_after"] == pytest.approx(card["calibration"]["test"]["ece_after"], abs=0.002)
    assert calibrated["ece_after"] <= 0.02


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
    loaded = load_model(None, device="cpu", bf16=False)
    fp32 = choose_runtime("cpu", bf16=False)
    logits = predict_logits(
        loaded.model, images, tta=1, runtime=fp32, batch_size=250, normalization=loaded.normalization
    )
    measured = (logits.argmax(1) == cifar_test.labels[chosen]).double().mean().item()
    assert measured == pytest.approx(check["accuracy"], abs=0.004)  # 2 of 500 images: rounding of fp32 kernels
