"""Bring your own weights: option A's padding, normalisation that travels with the weights, `resnet-cifar import`.

The published files are never in the repository: these tests write small synthetic checkpoints in the same layouts
(akamaster's `.th`, kuangliu-style and torchvision-style state dicts, with DataParallel/compile prefixes)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from resnet_cifar.cli import main
from resnet_cifar.data.normalization import CIFAR10, IMAGENET, Normalization, normalize, recorded_normalization
from resnet_cifar.inference.classify import classify
from resnet_cifar.inference.importer import import_checkpoint, our_key
from resnet_cifar.inference.loading import load_model
from resnet_cifar.inference.tta import predict_logits
from resnet_cifar.models import count_parameters, create_model
from resnet_cifar.models.layers import ZeroPadShortcut


def randomised(name: str, **options) -> torch.nn.Module:
    """A model with random weights and batch-norm statistics, so a wrong mapping shows in its outputs."""
    torch.manual_seed(0)
    model = create_model(name, **options)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def foreign_keys(state: dict, classifier: str, prefix: str = "") -> dict:
    """Our state dict in the other repositories' names: conv1/bn1/layerN/linear-or-fc/bn, without the counters."""
    out = {}
    for key, tensor in state.items():
        if key.endswith("num_batches_tracked"):
            continue  # older PyTorch (akamaster's files) did not save it
        key = re.sub(r"^stem\.0\.", "conv1.", key)
        key = re.sub(r"^stem\.1\.", "bn1.", key)
        key = re.sub(r"^fc\.", f"{classifier}.", key)
        key = re.sub(r"^final_act\.0\.", "bn.", key)
        key = re.sub(r"^stages\.(\d+)\.", lambda m: f"layer{int(m.group(1)) + 1}.", key)
        out[prefix + key] = tensor.clone()
    return out


@pytest.fixture
def akamaster_file(tmp_path):
    """A resnet20 in akamaster's layout and container, trained (here: randomised) with ImageNet's statistics."""
    model = randomised("resnet20", shortcut_padding="split")
    path = tmp_path / "resnet20-synthetic.th"
    torch.save({"best_prec1": 91.5, "state_dict": foreign_keys(model.state_dict(), "linear", "module.")}, path)
    return path, model


def images(n: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


# --- option A: where the zeros go ----------------------------------------------------------------------------------


def test_one_channel_lands_first_or_in_the_middle():
    x = torch.full((1, 1, 2, 2), 7.0)
    after = ZeroPadShortcut(1, 3, stride=2, padding="after")(x)
    split = ZeroPadShortcut(1, 3, stride=2, padding="split")(x)
    assert after.shape == split.shape == (1, 3, 1, 1)
    assert after.flatten().tolist() == [7.0, 0.0, 0.0]
    assert split.flatten().tolist() == [0.0, 7.0, 0.0]
    with pytest.raises(ValueError, match="shortcut_padding"):
        ZeroPadShortcut(1, 3, stride=2, padding="middle")


@pytest.mark.parametrize("name,options", [("resnet20", {}), ("resnet56", {}), ("preact_resnet20", {"shortcut": "A"})])
def test_padding_changes_the_function_not_the_parameters(name, options):
    after, split = create_model(name, **options), create_model(name, shortcut_padding="split", **options)
    assert count_parameters(after) == count_parameters(split)
    split.load_state_dict(after.state_dict())  # the same names and shapes
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(after.eval()(x), split.eval()(x))


def test_plain_twins_do_not_care_where_option_a_pads():
    plain, padded = create_model("plain20"), create_model("plain20", shortcut_padding="split")
    padded.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(plain.eval()(x), padded.eval()(x))


# --- normalisation travels with the weights ------------------------------------------------------------------------


def test_normalization_is_validated_and_old_files_mean_cifar10():
    assert recorded_normalization({}) == CIFAR10
    assert recorded_normalization({"normalization": IMAGENET.as_dict()}) == IMAGENET
    with pytest.raises(Exception, match="std must be positive"):
        Normalization((0.5, 0.5, 0.5), (0.2, 0.0, 0.2))
    with pytest.raises(Exception, match="3 finite numbers"):
        Normalization.from_dict({"mean": [0.5, 0.5], "std": [1, 1, 1]})


def test_akamaster_import_computes_what_the_weights_were_trained_to(akamaster_file, tmp_path):
    path, original = akamaster_file
    done = import_checkpoint(path, tmp_path / "out.safetensors")
    assert (done.model, done.layout, done.normalization) == ("resnet20", "akamaster", IMAGENET)
    assert done.options == {"shortcut": "A", "shortcut_padding": "split"}
    assert done.reported == {"best_prec1": 91.5}
    loaded = load_model(done.path, device="cpu")
    assert loaded.runtime.bf16 is False  # tested as published: fp32
    assert loaded.normalization == IMAGENET and loaded.metadata["test_setting"]["tta"] == 0
    batch = images()
    with torch.no_grad():
        expected = original(normalize(batch, normalization=IMAGENET))
        wrong_statistics = original(normalize(batch))
    got = predict_logits(loaded.model, batch, normalization=loaded.normalization, runtime=loaded.runtime)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got, wrong_statistics, atol=1e-2)
    top = classify(loaded.model, batch, top_k=1, runtime=loaded.runtime, normalization=loaded.normalization)
    assert [row[0][0] for row in top] == [loaded.metadata["classes"][i] for i in expected.argmax(1)]


def test_export_embeds_the_weights_normalization(akamaster_file, tmp_path):
    path, original = akamaster_file
    weights = tmp_path / "r20.safetensors"
    import_checkpoint(path, weights)
    exported = tmp_path / "r20.pt"
    assert main(["export", "--format", "torchscript", "--weights", str(weights), "--output", str(exported)]) == 0
    extra = {"metadata.json": ""}
    graph = torch.jit.load(str(exported), _extra_files=extra)
    assert json.loads(json.loads(extra["metadata.json"])["normalization"]) == IMAGENET.as_dict()
    batch = images(4)
    with torch.no_grad():
        torch.testing.assert_close(
            graph(batch.float() / 255), original(normalize(batch, normalization=IMAGENET)), rtol=1e-4, atol=1e-4
        )


def test_trained_checkpoints_record_cifar10_statistics():
    from resnet_cifar.config import TrainConfig
    from resnet_cifar.runtime import choose_runtime
    from resnet_cifar.train.schedule import Schedule
    from resnet_cifar.train.state import Position, checkpoint_metadata

    parts = SimpleNamespace(schedule=Schedule("onecycle", 0.1, 1), total_steps=1, steps_per_epoch=1, ema=None,
                            data=SimpleNamespace(folder=Path(".")))  # fmt: skip
    metadata = checkpoint_metadata(TrainConfig(), Position(), parts, choose_runtime("cpu", "fp32"), world_size=1)
    assert metadata["normalization"] == CIFAR10.as_dict()


# --- the other layouts ---------------------------------------------------------------------------------------------


def test_kuangliu_style_preact_net_with_sequential_projections(tmp_path):
    original = randomised("preact_resnet20")  # option B: 1x1 projections
    state = foreign_keys(original.state_dict(), "linear")
    state = {re.sub(r"\.shortcut\.weight$", ".shortcut.0.weight", k): v for k, v in state.items()}
    path = tmp_path / "preact.pth"
    torch.save({"net": state, "acc": 90.1, "epoch": 199}, path)
    done = import_checkpoint(path, tmp_path / "preact.safetensors")
    assert (done.model, done.options, done.layout) == ("preact_resnet20", {"shortcut": "B"}, "kuangliu")
    assert done.normalization == CIFAR10 and "assumed" in done.normalization_source
    loaded = load_model(done.path, device="cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), original(x))


def test_torchvision_style_with_wrapper_prefixes_and_given_statistics(tmp_path):
    original = randomised("resnet20", shortcut="B")
    state = foreign_keys(original.state_dict(), "fc", "module._orig_mod.")
    state = {k.replace(".shortcut.", ".downsample."): v for k, v in state.items()}
    path = tmp_path / "cifar10_resnet20.pt"
    torch.save(state, path)
    statistics = Normalization((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    done = import_checkpoint(path, tmp_path / "tv.safetensors", normalization=statistics)
    assert (done.model, done.options, done.layout) == ("resnet20", {"shortcut": "B"}, "torchvision")
    loaded = load_model(done.path, device="cpu")
    assert loaded.normalization == statistics
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), original(x))


def test_key_renames():
    assert our_key("layer2.0.downsample.0.weight") == "stages.1.0.shortcut.0.weight"
    assert our_key("linear.bias") == our_key("fc.bias") == "fc.bias"
    assert our_key("bn1.running_var") == "stem.1.running_var"
    assert our_key("layer1.0.bn1.weight") == "stages.0.0.bn1.weight"  # inner names stay


# --- what does not fit gets one line -------------------------------------------------------------------------------


def run_import(capsys, *args) -> tuple[int, str]:
    code = main(["import", *map(str, args)])
    err = capsys.readouterr().err.strip()
    return code, err


def test_a_misfitting_shape_names_the_first_key(akamaster_file, tmp_path, capsys):
    path, _ = akamaster_file
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["module.layer2.0.conv1.weight"] = torch.zeros(32, 8, 3, 3)
    torch.save(checkpoint, path)
    code, err = run_import(capsys, path, "--output", tmp_path / "x.safetensors")
    assert code == 2 and len(err.splitlines()) == 1
    assert "'module.layer2.0.conv1.weight' has shape [32, 8, 3, 3], resnet20 expects [32, 16, 3, 3]" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_missing_and_extra_keys_and_other_class_counts(akamaster_file, tmp_path):
    path, _ = akamaster_file
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["state_dict"]
    missing = {k: v for k, v in state.items() if k != "module.layer3.2.bn2.bias"}
    torch.save({"state_dict": missing}, tmp_path / "missing.th")
    with pytest.raises(Exception, match=r"resnet20 needs 'stages.2.2.bn2.bias'"):
        import_checkpoint(tmp_path / "missing.th", tmp_path / "a.safetensors")
    torch.save({"state_dict": {**state, "module.extra.weight": torch.zeros(1)}}, tmp_path / "extra.th")
    with pytest.raises(Exception, match=r"'module.extra.weight' has no place in resnet20"):
        import_checkpoint(tmp_path / "extra.th", tmp_path / "b.safetensors")
    hundred = {**state, "module.linear.weight": torch.zeros(100, 64), "module.linear.bias": torch.zeros(100)}
    torch.save({"state_dict": hundred}, tmp_path / "cifar100.th")
    with pytest.raises(Exception, match="100 classes"):
        import_checkpoint(tmp_path / "cifar100.th", tmp_path / "c.safetensors")
    torch.save({"state_dict": foreign_keys(create_model("resnet18").state_dict(), "linear")}, tmp_path / "r18.th")
    with pytest.raises(Exception, match=r"'conv1.weight' has shape \[64, 3, 3, 3\], resnet20 expects"):
        import_checkpoint(tmp_path / "r18.th", tmp_path / "d.safetensors", model_name="resnet20")


def test_objects_are_never_unpickled_and_foreign_files_get_one_line(tmp_path, capsys):
    hostile = tmp_path / "hostile.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1)}, hostile)
    code, err = run_import(capsys, hostile)
    assert code == 2 and len(err.splitlines()) == 1 and "never unpickled" in err
    assert "argparse.Namespace" in err and len(err) < 300
    text = tmp_path / "notes.th"
    text.write_text("not a checkpoint")
    code, err = run_import(capsys, text)
    assert code == 2 and "is not a torch.save checkpoint" in err
    empty = tmp_path / "empty.th"
    torch.save({"epoch": 3}, empty)
    code, err = run_import(capsys, empty)
    assert code == 2 and "holds no state dict" in err
    code, err = run_import(capsys, tmp_path / "absent.th")
    assert code == 2 and "no checkpoint file at" in err


def test_cli_writes_once_and_reports_what_it_read(akamaster_file, tmp_path, capsys):
    path, _ = akamaster_file
    out = tmp_path / "weights.safetensors"
    assert main(["import", str(path), "--output", str(out)]) == 0
    said = capsys.readouterr().out
    assert "akamaster layout" in said and "ImageNet's" in said and "resnet20" in said
    assert json.loads(out.with_suffix(".json").read_text())["model_options"]["shortcut_padding"] == "split"
    code, err = run_import(capsys, path, "--output", out)
    assert code == 2 and "--force" in err
    code, err = run_import(capsys, path, "--output", out, "--mean", "0.5", "0.5", "0.5")
    assert code == 2 and "--mean and --std go together" in err


def test_evaluate_plot_and_predict_use_the_imported_statistics(akamaster_file, fake_cifar, tmp_path, capsys):
    from PIL import Image

    from resnet_cifar.data import load_split
    from resnet_cifar.evaluate.metrics import accuracy

    path, original = akamaster_file
    weights = tmp_path / "imported.safetensors"
    import_checkpoint(path, weights)
    test = load_split(fake_cifar, "test")
    with torch.no_grad():
        expected = original(normalize(test.images, normalization=IMAGENET))
    common = ("--data-dir", str(fake_cifar), "--output-dir", str(tmp_path / "out"))
    assert main(["evaluate", str(weights), *common]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"test_accuracy={accuracy(expected, test.labels):.4f}"
    results = json.loads((tmp_path / "out" / "imported-results.json").read_text())
    assert results["tta"] == 0 and results["runtime"]["precision"] == "fp32"
    assert main(["plot", str(weights), *common]) == 0
    assert (tmp_path / "out" / "imported-pictures" / "inference.png").is_file()
    Image.fromarray(test.images[0].permute(1, 2, 0).numpy()).save(tmp_path / "first.png")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "first.png"), "--weights", str(weights), "--tta", "0", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"][0]["class"]
    assert top == json.loads(weights.with_suffix(".json").read_text())["classes"][int(expected[0].argmax())]
