"""The weights shipped inside the package: small, offline, and as accurate as their model card says."""

import json

import pytest

from resnet_cifar.evaluate.inference import predict_logits
from resnet_cifar.inference.loading import DEFAULT_WEIGHTS, load_model


def test_shipped_weights_are_small_and_carry_a_model_card():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size <= 5_000_000
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    for key in ("command", "config", "seed", "date", "machine", "test_accuracy"):
        assert key in card, key
    assert {"no_tta", "tta_flip"} <= set(card["test_accuracy"])


@pytest.mark.parametrize(("tta", "key"), [(0, "no_tta"), (1, "tta_flip")])
def test_shipped_weights_reproduce_the_model_card(cifar_test, tta, key):
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    loaded = load_model(None)  # no --weights: the shipped file, no network needed
    logits = predict_logits(loaded.model, cifar_test.images, tta=tta)
    measured = (logits.argmax(1) == cifar_test.labels).double().mean().item()
    assert measured == pytest.approx(card["test_accuracy"][key], abs=0.001)
