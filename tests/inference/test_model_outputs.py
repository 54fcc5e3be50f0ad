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


def picture(path):
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 120, 40)).save(path)
    return path


def test_predict_never_draws_its_explanation_over_an_input(tmp_path, capsys):
    photo = picture(tmp_path / "p.png")
    before = photo.read_bytes()
    for flags in (["--explain", photo], ["--explain", photo, "--force"]):
        assert cli_code("predict", photo, *flags) == 2
        assert "is one of this command's inputs" in capsys.readouterr().err
    folder = tmp_path / "album"
    folder.mkdir()
    inside = picture(folder / "q.png")
    assert cli_code("predict", folder, "--explain", inside, "--force") == 2  # an input found inside a folder too
    assert photo.read_bytes() == before and inside.is_file()


def test_predict_explain_takes_a_new_png_file_only(tmp_path, capsys):
    photo = picture(tmp_path / "p.png")
    for target, message in (
        (tmp_path / "x.safetensors", "name the .png file"),
        (tmp_path, "name the .png file"),
        ("/dev/null", "name the .png file"),
    ):
        assert cli_code("predict", photo, "--explain", target, "--force") == 2
        assert message in capsys.readouterr().err
    (tmp_path / "kept.png").write_bytes(b"mine")
    assert cli_code("predict", photo, "--explain", tmp_path / "kept.png") == 2
    assert "exists; pass --force" in capsys.readouterr().err and (tmp_path / "kept.png").read_bytes() == b"mine"
    assert cli_code("predict", photo, "--explain", tmp_path / "new.png") == 0
    assert (tmp_path / "new.png").stat().st_size > 1000


@pytest.mark.parametrize("command", ["export", "import"])
def test_export_and_import_never_replace_a_device_or_a_pipe_even_with_force(command, tmp_path, capsys):
    import os
    import stat

    from resnet_cifar.inference.loading import DEFAULT_WEIGHTS

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    source = ["export", "--format", "onnx"] if command == "export" else ["import", DEFAULT_WEIGHTS]
    for target in (pipe, "/dev/null"):
        assert cli_code(*source, "--output", target, "--force") == 2
        assert "not a file this command may write" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(pipe).st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_import_never_writes_over_the_file_it_reads(tmp_path, capsys):
    import torch

    from resnet_cifar.models import create_model

    source = tmp_path / "resnet20.pt"
    torch.save(create_model("resnet20").state_dict(), source)
    before = source.read_bytes()
    assert cli_code("import", source, "--output", source, "--force") == 2
    assert "is one of this command's inputs" in capsys.readouterr().err and source.read_bytes() == before
