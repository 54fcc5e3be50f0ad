"""Small training subsets end to end, the plain twin of fastnet, and the data-efficiency experiment's bookkeeping."""

import json

import pytest
import torch

from commands import run_cli
from resnet_cifar.cli import main
from resnet_cifar.config import load_config
from resnet_cifar.errors import ConfigError
from resnet_cifar.experiments import data_efficiency as de
from resnet_cifar.models import create_model
from resnet_cifar.runtime import choose_runtime
from tiny import make_trainer

TINY_NET = {"widths": [8, 16, 32], "blocks": [1, 1, 1], "stem_width": 8}


FP32 = choose_runtime("cpu", "fp32")


def test_twenty_images_train_end_to_end_with_a_balanced_subset_and_pictures(cifar_dir, tmp_path):
    config = load_config(
        None,
        {
            "model": "fastnet",
            "model_options": TINY_NET,
            "train_size": 20,
            "val_size": 100,
            "batch_size": 10,
            "epochs": 2,
            "data_dir": str(cifar_dir),
            "output_dir": str(tmp_path),
            "progress": "none",
            "precision": "fp32",
            "device": "cpu",
            "eval_batch_size": 2000,
            "tta": 0,
        },
    )
    trainer = make_trainer(config, tmp_path / "n20")
    results = trainer.fit()
    data = trainer.data
    assert torch.bincount(data.train_labels, minlength=10).tolist() == [2] * 10
    assert torch.bincount(data.val_labels, minlength=10).tolist() == [10] * 10
    train_rows = {row.numpy().tobytes() for row in data.train_images.flatten(1)}
    assert not any(row.numpy().tobytes() in train_rows for row in data.val_images.flatten(1))
    assert results["train_images"] == 20 and 0.0 <= results["top1"] <= 1.0
    for picture in ("inference.png", "curves.png", "confusion_matrix.png"):
        assert (tmp_path / "n20" / picture).stat().st_size > 10_000


def test_the_plain_twin_of_fastnet_has_the_same_layers_and_no_shortcut():
    torch.manual_seed(0)
    residual = create_model("fastnet", **TINY_NET)
    plain = create_model("fastnet", **TINY_NET, residual=False)
    assert [p.shape for p in residual.parameters()] == [p.shape for p in plain.parameters()]
    plain.load_state_dict(residual.state_dict())
    residual.eval(), plain.eval()
    pair, twin_pair = residual.stages[0][1], plain.stages[0][1]
    x = torch.randn(2, 8, 16, 16)
    assert torch.equal(twin_pair(x), twin_pair.branch(x))
    assert torch.allclose(pair(x), x + pair.branch(x))
    with pytest.raises(ValueError, match="zero_init_residual"):
        create_model("fastnet", residual=False, zero_init_residual=True)


def test_each_residual_net_names_its_plain_twin():
    assert de.twin("resnet20", {}, "plain") == ("plain20", {})
    assert de.twin("fastnet", {"widths": [8, 16, 32]}, "plain") == (
        "fastnet",
        {"widths": [8, 16, 32], "residual": False},
    )
    assert de.twin("resnet18", {}, "residual") == ("resnet18", {})
    with pytest.raises(ConfigError, match="no plain twin"):
        de.twin("resnet18", {}, "plain")


def tiny_settings(cifar_dir, **changes) -> de.DataEfficiencySettings:
    settings = de.DataEfficiencySettings(
        sizes=(20, 40),
        seeds=(0,),
        steps=3,
        model_options=TINY_NET,
        test_images=100,
        val_size=100,
        device="cpu",
        threads=2,
        data_dir=str(cifar_dir),
    )
    settings.recipe.update(batch_size=10, precision="fp32", tta=0)
    for key, value in changes.items():
        setattr(settings, key, value)
    return settings


def test_points_are_written_as_they_finish_and_reused_only_for_the_same_settings(cifar_dir, tmp_path):
    settings = tiny_settings(cifar_dir)
    trained: list[str] = []
    log: list[str] = []
    results = de.run_data_efficiency(settings, tmp_path, FP32, log=log.append)
    trained += [line for line in log if not line.startswith("net ")]
    assert next(line for line in log if line.startswith("net ")) == "net 1/4 residual-20-s0: 3 steps on 20 images"
    assert len(trained) == 4 and results["missing"] == []
    point = json.loads((tmp_path / "points" / "plain-40-s0.json").read_text())
    assert (point["kind"], point["model_options"]["residual"], point["images_seen"], point["epochs"]) == (
        "plain",
        False,
        30,
        0.75,
    )
    summary = results["summary"]["residual"]
    assert [row["train_size"] for row in summary] == [20, 40] and summary[0]["n"] == 1 and summary[0]["std"] == 0.0

    trained.clear()
    again = de.run_data_efficiency(settings, tmp_path, FP32, log=trained.append)
    assert trained == [] and again["summary"] == results["summary"]  # nothing retrained: an interrupted run resumes
    de.run_data_efficiency(tiny_settings(cifar_dir, steps=4), tmp_path, FP32, log=trained.append)
    assert len([line for line in trained if not line.startswith("net ")]) == 4  # another budget: another experiment

    paths = de.write_data_efficiency(again, tmp_path)
    assert json.loads(paths[0].read_text())["budget"] == "3 steps of 10 images for every point"
    assert paths[1].stat().st_size > 10_000


def test_report_only_summarises_what_is_there_and_names_what_is_missing(cifar_dir, tmp_path):
    de.run_data_efficiency(tiny_settings(cifar_dir, sizes=(20,)), tmp_path, FP32, log=lambda _: None)
    settings = tiny_settings(cifar_dir, sizes=(20,), seeds=(0, 1))
    report = de.run_data_efficiency(settings, tmp_path, FP32, train=False)
    assert report["missing"] == ["residual-20-s1", "plain-20-s1"]
    assert [row["n"] for row in report["summary"]["residual"]] == [1]
    # the CLI's settings differ from the tiny ones (net, batch): the folder's own points are reported, named as such
    report_only = ["--sizes", "500", "--seeds", "0", "--report-only"]
    result = run_cli("experiment", "data-efficiency", "--out", tmp_path, *report_only)
    assert result.returncode == 0, result.stderr
    assert f"reporting the 2 points in {tmp_path}, which were run with other settings" in result.stdout
    written = json.loads((tmp_path / "data_efficiency.json").read_text())
    assert len(written["points"]) == 2 and written["settings"]["sizes"] == [20] and "note" in written["settings"]


def test_bad_sizes_are_one_clear_line(capsys):
    assert main(["experiment", "data-efficiency", "--sizes", "505", "--report-only"]) == 2
    assert "sizes: 505 is not a positive multiple of 10" in capsys.readouterr().err
    assert main(["experiment", "data-efficiency", "--sizes", "100", "--report-only"]) == 2
    assert "sizes: 100 is smaller than the batch of 128" in capsys.readouterr().err
