"""Calibration: ECE and NLL by hand, temperature scaling recovers a known temperature, and every use of trained
weights (a run's results, predict, the shipped weights) applies the temperature fitted on the validation split."""

import json
import math

import pytest
import torch

from resnet_cifar.inference.calibration import (
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from resnet_cifar.inference.classify import classify
from resnet_cifar.inference.loading import DEFAULT_WEIGHTS, load_model


def test_ece_by_hand():
    # two examples at confidence 0.9 (one right), two at 0.6 (both right): |0.5-0.9|/2 + |1-0.6|/2 = 0.4
    confident = torch.log(torch.tensor([0.9, 0.1 / 9]).repeat_interleave(torch.tensor([1, 9])))
    unsure = torch.log(torch.tensor([0.6, 0.4 / 9]).repeat_interleave(torch.tensor([1, 9])))
    logits = torch.stack([confident, confident, unsure, unsure])
    labels = torch.tensor([0, 1, 0, 0])
    assert expected_calibration_error(logits, labels) == pytest.approx(0.4, abs=1e-6)
    expected_nll = -(math.log(0.9) + math.log(0.1 / 9) + 2 * math.log(0.6)) / 4
    assert negative_log_likelihood(logits, labels) == pytest.approx(expected_nll, rel=1e-5)


def test_temperature_scaling_recovers_the_temperature_the_labels_were_drawn_with():
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20_000, 10, generator=generator)
    labels = torch.multinomial((logits / 2.0).softmax(1), 1, generator=generator).squeeze(1)
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(2.0, rel=0.05)
    report = calibration_report(logits, labels, temperature)
    assert report["ece_after"] < 0.02 < report["ece_before"] and report["nll_after"] < report["nll_before"]
    assert (logits / temperature).argmax(1).equal(logits.argmax(1))  # no prediction changes


def test_classify_applies_the_temperature(machine):
    machine("avx2")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10)).eval()
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    plain = classify(model, images, top_k=1)
    sharper = classify(model, images, top_k=1, temperature=0.5)
    assert [p[0][0] for p in plain] == [p[0][0] for p in sharper]  # the same classes
    assert all(s[0][1] > p[0][1] for p, s in zip(plain, sharper, strict=True))  # more confident


def test_the_shipped_weights_carry_their_temperature():
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    calibration = card["calibration"]
    assert load_model(None, device="cpu").temperature == pytest.approx(calibration["temperature"])
    assert "validation" in calibration["fitted_on"]
    assert calibration["test"]["ece_after"] <= 0.02 < calibration["test"]["ece_before"]
