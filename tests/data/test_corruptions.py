"""The corruption benchmark: every corruption changes images at every severity (more at severity 5 than at 1), the
same seed gives the same bytes, and the benchmark reports what CIFAR-10-C reports."""

from __future__ import annotations

import json

import pytest
import torch

from resnet_cifar.cli import main
from resnet_cifar.data.corruptions import CONSTANTS, CORRUPTIONS, FAMILIES, LEFT_OUT, SEVERITIES, corrupt
from resnet_cifar.errors import ConfigError
from resnet_cifar.evaluate.robustness import format_report, parse_corruptions, run_benchmark

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "fog",
          "elastic_transform"}  # fmt: skip
# elastic_transform's published constants trade the affine jitter (largest at severity 1) for the elastic field
# (largest at 5), so its pixel change is not ordered by severity; every other one changes more at 5 than at 1
UNORDERED = {"elastic_transform"}


@pytest.fixture(scope="module")
def images(cifar_test):
    return cifar_test.images[:24]


def change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().mean())


def test_fourteen_corruptions_in_four_families_with_cifar10c_constants():
    assert len(CORRUPTIONS) == 14 and set(CORRUPTIONS) == set(CONSTANTS) and "frost" in LEFT_OUT
    assert sorted(sum(FAMILIES.values(), ())) == sorted(CORRUPTIONS)
    assert all(len(values) == 5 for values in CONSTANTS.values())
    assert CONSTANTS["motion_blur"][4] == (9, 2.5) and CONSTANTS["jpeg_compression"] == (80, 65, 58, 50, 40)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_changes_images_at_every_severity_and_more_at_five(name, images):
    changes = []
    for severity in SEVERITIES:
        out = corrupt(images, name, severity)
        assert out.dtype == torch.uint8 and out.shape == images.shape
        changes.append(change(out, images))
    assert min(changes) > 0.5, changes  # mean absolute change in 0..255 units
    if name not in UNORDERED:
        assert changes[4] > changes[0], changes


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_same_seed_same_bytes_other_seed_other_bytes(name, images):
    assert torch.equal(corrupt(images, name, 3, seed=7), corrupt(images, name, 3, seed=7))
    assert not torch.equal(corrupt(images, name, 3, seed=7), corrupt(images, name, 3, seed=8))


def test_deterministic_ones_do_not_depend_on_the_seed(images):
    for name in sorted(set(CORRUPTIONS) - RANDOM):
        assert torch.equal(corrupt(images, name, 2, seed=0), corrupt(images, name, 2, seed=5)), name


def test_known_values():
    grey = torch.full((1, 3, 4, 4), 100, dtype=torch.uint8)
    assert torch.equal(corrupt(grey, "contrast", 5), grey)  # no contrast to reduce
    brighter = corrupt(grey, "brightness", 5)  # HSV value + 0.3: a grey pixel stays grey
    assert int(brighter[0, 0, 0, 0]) == int((100 / 255 + 0.3) * 255) and brighter.unique().numel() == 1
    with pytest.raises(ValueError, match="frost"):
        corrupt(grey, "frost", 1)
    with pytest.raises(ValueError, match="severity"):
        corrupt(grey, "fog", 6)


def test_parse_and_report():
    assert parse_corruptions("all") == CORRUPTIONS
    assert parse_corruptions("fog, contrast") == ("fog", "contrast")
    with pytest.raises(ConfigError, match="frost"):
        parse_corruptions("frost")
    labels = torch.arange(20) % 10
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def perfect_on_clean(batch):  # right on the clean images, wrong on anything else
        same = (batch == images).flatten(1).all(1)
        logits = torch.full((len(batch), 10), -5.0)
        logits[torch.arange(len(batch)), torch.where(same, labels, (labels + 1) % 10)] = 5.0
        return logits

    report = run_benchmark(perfect_on_clean, images, labels, corruptions=("contrast", "gaussian_noise"))
    assert report["clean_accuracy"] == 1.0 and report["mean_corruption_accuracy"] == 0.0
    assert report["relative_drop"] == 1.0 and set(report["per_family"]) == {"noise", "digital"}
    assert "| contrast | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 |" in format_report(report)


def test_evaluate_corruptions_on_the_shipped_weights(fake_cifar, tmp_path, capsys):
    from resnet_cifar.inference.loading import DEFAULT_WEIGHTS

    args = ["evaluate", str(DEFAULT_WEIGHTS), "--corruptions", "fog,pixelate", "--corruption-images", "30"]
    assert main([*args, "--data-dir", str(fake_cifar), "--output-dir", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("mean_corruption_accuracy=")
    report = json.loads((tmp_path / "robust-corruptions.json").read_text())
    assert report["images"] == 30 and set(report["accuracy"]) == {"fog", "pixelate"}
    assert set(report["accuracy"]["fog"]) == {"1", "2", "3", "4", "5"}
    assert (tmp_path / "robust-corruptions.png").stat().st_size > 10_000
    assert main(["evaluate", str(DEFAULT_WEIGHTS), "--corruptions", "frost", "--data-dir", str(fake_cifar)]) == 2


def test_corruption_benchmark_on_the_validation_split(fake_cifar, tmp_path, capsys):
    """`--corruption-split val` measures the weights' own validation split (their val_size and data_seed), the images
    robust recipes are tuned on; weights without one are refused in one line."""
    from resnet_cifar.checkpoint import load_checkpoint, save_checkpoint
    from resnet_cifar.data.cifar10 import load_split
    from resnet_cifar.data.splits import train_val_split
    from resnet_cifar.inference.loading import DEFAULT_WEIGHTS

    tensors, metadata = load_checkpoint(DEFAULT_WEIGHTS)
    for val_size in (40, 0):
        card = metadata["card"]
        metadata["card"] = {**card, "config": {**card["config"], "val_size": val_size, "data_seed": 3}}
        save_checkpoint(tmp_path / f"val{val_size}.safetensors", tensors, metadata)
    common = ["--corruptions", "contrast", "--data-dir", str(fake_cifar), "--output-dir", str(tmp_path)]
    assert main(["evaluate", str(tmp_path / "val40.safetensors"), *common, "--corruption-split", "val"]) == 0
    report = json.loads((tmp_path / "val40-corruptions-val.json").read_text())
    assert report["split"] == "val" and report["images"] == 40
    train = load_split(fake_cifar, "train")
    _, val = train_val_split(train.labels, 40, 3)
    assert report["clean_accuracy"] == pytest.approx(_shipped_accuracy(train.images[val], train.labels[val]), abs=1e-6)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "val0.safetensors"), *common, "--corruption-split", "val"]) == 2
    assert "no validation split" in capsys.readouterr().err


def _shipped_accuracy(images, labels) -> float:
    from resnet_cifar.evaluate.evaluation import TestSetting
    from resnet_cifar.evaluate.metrics import accuracy
    from resnet_cifar.inference.loading import load_model

    loaded = load_model(None, device="auto", precision="auto")
    return accuracy(TestSetting.of_weights(loaded).logits(loaded.model, images, loaded.runtime), labels)
