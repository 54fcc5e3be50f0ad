"""Files the model commands write (export, import, predict --explain): never over an input, a special file or
another file unasked, never half-written."""

from __future__ import annotations

import pytest

from commands import cli_code, run_cli
from fakes import shipped_parts
from resnet_cifar.checkpoint import save_checkpoint


@pytest.mark.parametrize("opset", ["5", "99"])
def test_export_opsets_outside_the_exporters_range_are_one_line(opset, tmp_path, capsys):
    assert cli_code("export", "--format", "onnx", "--opset", opset, "--output", tmp_path / "m.onnx") == 2
    assert "--opset: this PyTorch exports ONNX opsets 7 to" in capsys.readouterr().err


def test_export_into_a_folder_names_the_file(tmp_path, capsys):
    assert cli_code("export", "--format", "torchscript", "--output", tmp_path) == 0
    assert (tmp_path / "fastnet.pt").is_file()


def test_export_asks_for_force_and_never_writes_over_a_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    tensors, metadata = shipped_parts()
    save_checkpoint(run / "last.safetensors", tensors, metadata)
    (run / "config.yaml").write_text("model: fastnet\n")
    before = (run / "last.safetensors").read_bytes()

    refused = run_cli(
        "export", "--format", "torchscript", "--weights", str(run), "--output", str(run / "last.safetensors")
    )
    assert refused.returncode == 2 and "training run" in refused.stderr and "Traceback" not in refused.stderr
    forced = run_cli(
        "export", "--format", "torchscript", "--weights", str(run), "--output", str(run / "last.safetensors"), "--force"
    )
    assert forced.returncode == 2 and "never written over" in forced.stderr
    assert (run / "last.safetensors").read_bytes() == before

    other = tmp_path / "model.pt"
    other.write_bytes(b"mine")
    kept = run_cli("export", "--format", "torchscript", "--output", str(other))
    assert kept.returncode == 2 and "--force" in kept.stderr and other.read_bytes() == b"mine"
    assert run_cli("export", "--format", "torchscript", "--output", str(other), "--force").returncode == 0
    assert other.read_bytes()[:2] == b"PK"


def test_export_into_a_place_that_cannot_be_written_names_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = run_cli("export", "--format", "torchscript", "--output", str(blocker / "model.pt"))
    assert result.returncode == 2 and str(blocker / "model.pt") in result.stderr
    assert "Traceback" not in result.stderr
