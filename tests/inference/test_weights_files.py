"""Weights files as found on disk: the wrong kind named, altered metadata refused, impossible values refused on
load, and nothing allocated before the file is known to fit."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from PIL import Image

from commands import cli_code, run_cli
from fakes import shipped_parts
from resnet_cifar.checkpoint import load_checkpoint, save_checkpoint
from resnet_cifar.errors import CheckpointError
from resnet_cifar.inference.loading import DEFAULT_WEIGHTS, load_model
from resnet_cifar.models import create_model
from tiny import SMALL_RUN


def test_weights_without_metadata_name_the_flags_that_work(finished_run, tmp_path, capsys):
    from safetensors.torch import save_file

    from resnet_cifar.checkpoint import load_checkpoint, split_prefix

    tensors, _ = load_checkpoint(finished_run / "last.safetensors")
    save_file(split_prefix(tensors, "model"), str(tmp_path / "raw.safetensors"))
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert cli_code("predict", tmp_path / "x.png", "--weights", tmp_path / "raw.safetensors") == 2
    assert "pass --model NAME" in capsys.readouterr().err
    options = json.dumps(SMALL_RUN["model_options"])
    flags = ["--weights", tmp_path / "raw.safetensors", "--model", "fastnet", "--model-options", options]
    assert cli_code("predict", tmp_path / "x.png", "--json", *flags) == 0
    assert cli_code("export", "--format", "torchscript", "--output", tmp_path / "m.pt", *flags) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("last.json", b'{"format": 1}', "is a JSON file"),
        ("model.onnx", b"\x08\x07\x12\x07pytorch", "is an ONNX model"),
        ("model.pt", b"\x80\x02}q\x00.", "is a pickle (torch.save) file, which is never unpickled"),
        ("photo.png", b"\x89PNG\r\n\x1a\n0000", "is an image"),
    ],
)
def test_weights_of_another_kind_say_what_they_are(name, content, kind, tmp_path, capsys):
    (tmp_path / name).write_bytes(content)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert cli_code("predict", tmp_path / "x.png", "--weights", tmp_path / name) == 2
    err = capsys.readouterr().err
    assert kind in err and "expected a .safetensors file" in err and "corrupted" not in err


def test_a_rewritten_temperature_in_the_header_is_refused(tmp_path):
    tensors, header = safetensors.torch.load_file(DEFAULT_WEIGHTS), None
    with safetensors.safe_open(str(DEFAULT_WEIGHTS), framework="pt") as handle:
        header = handle.metadata()
    metadata = json.loads(header["resnet_cifar"])
    metadata["card"]["calibration"]["temperature"] = 0.001
    altered = tmp_path / "altered.safetensors"
    safetensors.torch.save_file(tensors, str(altered), metadata={"resnet_cifar": json.dumps(metadata)})
    with pytest.raises(CheckpointError, match="metadata"):
        load_checkpoint(altered)
    result = run_cli("predict", str(altered), "--weights", str(altered))
    assert result.returncode == 2 and "altered" in result.stderr
    stripped = {k: v for k, v in metadata.items() if k != "metadata_sha256"}
    safetensors.torch.save_file(tensors, str(altered), metadata={"resnet_cifar": json.dumps(stripped)})
    with pytest.raises(CheckpointError, match="no checksum"):
        load_checkpoint(altered)


def test_nan_weights_and_temperatures_are_refused_by_name(tmp_path):
    tensors, metadata = shipped_parts()
    name = next(k for k, t in tensors.items() if t.is_floating_point() and k.endswith("weight"))
    poisoned = dict(tensors)
    poisoned[name] = tensors[name].clone()
    poisoned[name].view(-1)[0] = float("nan")
    save_checkpoint(tmp_path / "nan.safetensors", poisoned, metadata)  # a valid checksum: the values are the fault
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        load_model(tmp_path / "nan.safetensors", device="cpu")
    for temperature in (float("nan"), float("inf"), 0.0, -1.0):
        card = {**metadata["card"], "calibration": {**metadata["card"]["calibration"], "temperature": temperature}}
        save_checkpoint(tmp_path / "t.safetensors", tensors, {**metadata, "card": card})
        with pytest.raises(CheckpointError, match="temperature"):
            load_model(tmp_path / "t.safetensors", device="cpu")


def test_weights_that_do_not_fit_name_the_tensors(tmp_path):
    save_checkpoint(tmp_path / "r20.safetensors", create_model("resnet20").state_dict(), {})
    with pytest.raises(CheckpointError) as refused:
        load_model(tmp_path / "r20.safetensors", model_name="resnet32", device="cpu")
    message = str(refused.value)
    assert "missing stages.0.3" in message and "more" in message
    state = create_model("resnet20").state_dict()
    state["fc.weight"] = torch.zeros(10, 32)
    save_checkpoint(tmp_path / "w.safetensors", state, {})
    with pytest.raises(CheckpointError, match=r"shape of fc\.weight \(10, 32\) \(the model's \(10, 64\)\)"):
        load_model(tmp_path / "w.safetensors", model_name="resnet20", device="cpu")


def test_a_refused_pickle_is_named_and_weights_only_false_is_never_suggested(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "optimizer": torch.optim.SGD([torch.zeros(1)], lr=0.1)}, path)
    result = run_cli("import", str(path), "--output", str(tmp_path / "out.safetensors"))
    assert result.returncode == 2 and "torch.optim.sgd.SGD" in result.stderr
    assert "weights_only" not in result.stderr and "False" not in result.stderr


GIANT = """
import resource, sys
from pathlib import Path
from resnet_cifar.checkpoint import load_checkpoint, save_checkpoint
from resnet_cifar.inference.loading import DEFAULT_WEIGHTS, load_model
from resnet_cifar.errors import ResnetCifarError
tensors, metadata = load_checkpoint(DEFAULT_WEIGHTS)
keep = {k: v for k, v in metadata.items() if k not in ("format", "tensor_sha256", "metadata_sha256")}
keep["model_options"] = {**keep["model_options"], "widths": [int(sys.argv[2])] * 3}
save_checkpoint(Path(sys.argv[1]), tensors, keep)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load_model(sys.argv[1], device="cpu", precision="fp32")
except ResnetCifarError as error:
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, "|", error)
"""


@pytest.mark.parametrize("width", [4000, 100_000])
def test_metadata_naming_a_giant_model_is_refused_before_anything_is_allocated(width, tmp_path):
    """A 4 MB weights file whose metadata says widths [4000, 4000, 4000] (a 4.8 GB model) or 100000: the shapes are
    compared on PyTorch's meta device, so the refusal costs nothing and is one line."""
    import subprocess
    import sys

    path = tmp_path / "giant.safetensors"
    done = subprocess.run([sys.executable, "-c", GIANT, str(path), str(width)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    grown, message = done.stdout.split("|", 1)
    assert int(grown) < 100 and "does not fit model fastnet" in message and "shape of" in message


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tensor": ("running_var", -1.0)}, "holds negative variances"),
        ({"temperature": 1e-300}, "calibration temperature must be in"),
        ({"temperature": 1e300}, "calibration temperature must be in"),
        ({"std": [1e-300, 0.2, 0.2]}, "normalization std must be in"),
    ],
)
def test_finite_but_impossible_weights_and_metadata_are_refused_on_load(change, message, tmp_path, capsys):
    tensors, metadata = shipped_parts()
    if "tensor" in change:
        suffix, value = change["tensor"]
        name = next(key for key in tensors if key.endswith(suffix))
        tensors[name] = torch.full_like(tensors[name], value)
    if "temperature" in change:
        metadata["card"] = {**metadata["card"], "calibration": {"temperature": change["temperature"]}}
    if "std" in change:
        metadata["normalization"] = {**metadata["normalization"], "std": change["std"]}
    path = tmp_path / "odd.safetensors"
    save_checkpoint(path, tensors, metadata)
    with pytest.raises(CheckpointError, match=message):
        load_model(path, device="cpu")
    assert cli_code("predict", DEFAULT_WEIGHTS.parent / "robust.json", "--weights", path, "--json") == 2
    assert message in capsys.readouterr().err  # not "ship nan%", not bare NaN in the JSON


def test_model_options_that_contradict_the_files_are_refused(capsys):
    flags = ["--weights", "resnet20", "--model-options", "{shortcut: A, shortcut_padding: split}"]
    assert cli_code("evaluate", *flags) == 2
    assert "contradicts it" in capsys.readouterr().err
    assert cli_code("export", "--format", "onnx", "--weights", "resnet20", "--model", "resnet32") == 2
    assert "holds model 'resnet20'" in capsys.readouterr().err


def test_json_predictions_are_always_valid_json(tmp_path, capsys):
    Image.new("RGB", (40, 30), (10, 200, 40)).save(tmp_path / "p.png")
    assert cli_code("predict", tmp_path / "p.png", tmp_path / "missing.png", "--json") == 1

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    answer = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert answer[0]["top"][0]["probability"] > 0 and answer[1]["error"] == "no such file or folder"
