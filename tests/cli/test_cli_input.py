"""The command line as a newcomer types it: every refusal is one line with the right exit code, and the help says
each default once."""

from __future__ import annotations

import signal

import pytest
from PIL import Image

from commands import cli_code, run_cli
from resnet_cifar import cli
from resnet_cifar.errors import Interrupted


@pytest.mark.parametrize("k", ["0", "11", "-1", "two"])
def test_top_k_is_between_1_and_10(k, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_code("predict", "x.png", "--top-k", k)
    assert stop.value.code == 2 and "--top-k" in capsys.readouterr().err


def test_an_interrupted_command_exits_like_a_shell_does(monkeypatch, capsys):
    def stopped(args):
        raise Interrupted(signal.SIGINT, "ckpt")

    args = cli.build_parser().parse_args(["experiment", "degradation", "--quick"])
    monkeypatch.setattr(args, "func", stopped)
    assert cli._run(args) == 130


def test_weights_and_checkpoint_mean_the_same_everywhere(finished_run, capsys):
    assert cli_code("evaluate", "--weights", "best") == 2
    assert "use --checkpoint best" in capsys.readouterr().err
    assert cli_code("predict", "x.png", "--weights", finished_run, "--checkpoint", "best", "--device", "cpu") == 1
    assert "no such file or folder" in capsys.readouterr().out  # the weights loaded; only the image is missing


def test_file_system_refusals_are_one_line(monkeypatch, capsys):
    def refused(args):
        raise PermissionError(13, "Permission denied", "outputs/fast80/metrics.csv")

    args = cli.build_parser().parse_args(["models"])
    monkeypatch.setattr(args, "func", refused)
    assert cli._run(args) == 1
    assert capsys.readouterr().err == "resnet-cifar: error: Permission denied: outputs/fast80/metrics.csv\n"


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "cuda:7"])
def test_unknown_or_unavailable_devices_are_one_line_in_every_command(device, finished_run, tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    commands = [
        ["train", "--device", device, "--output-dir", tmp_path / "out"],
        ["evaluate", finished_run, "--device", device],
        ["plot", finished_run, "--device", device],
        ["predict", tmp_path / "x.png", "--device", device],
        ["export", "--format", "onnx", "--device", device, "--output", tmp_path / "m.onnx"],
        ["experiment", "data-efficiency", "--quick", "--device", device, "--out", tmp_path / "exp"],
    ]
    for command in commands:
        assert cli_code(*command) == 2, command
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "device" in err and "Traceback" not in err, (command, err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("size", ["0", "-5"])
def test_evaluate_batch_sizes_below_one_are_refused(size, finished_run, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_code("evaluate", finished_run, "--batch-size", size)
    assert stop.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_the_model_table_comes_from_the_shipped_file_without_building_models(monkeypatch, capsys):
    from resnet_cifar.models import summary

    monkeypatch.setattr(summary, "model_table", lambda *a, **k: pytest.fail("models were built"))
    assert cli_code("models") == 0
    table = capsys.readouterr().out
    assert "| fastnet 32-64-128 (make train) | fast | 8 | 0.42M |" in table  # the README's default net, by name


def test_experiment_help_gives_each_default_once(capsys):
    with pytest.raises(SystemExit):
        cli_code("experiment", "gradient-flow", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "$RESNET_CIFAR_DATA, then ./data)" in text


def test_unknown_flags_suggest_only_the_subcommands_own():
    result = run_cli("train", "--foo")
    assert result.returncode == 2 and "--force" not in result.stderr
    assert "did you mean --force" in run_cli("export", "--format", "onnx", "--forse").stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["gradient-flow", "--norms", "foo"], "norms: each one of bn, none, got 'foo'"),
        (["gradient-flow", "--lr", "nan"], "lr: must be a finite number"),
        (["degradation", "--epochs", "inf"], "epochs: must be a finite number"),
        (["depth", "--residual-depths", "21"], "not a CIFAR ResNet depth"),
    ],
)
def test_experiment_settings_that_cannot_run_are_one_line_before_any_work(flags, message, capsys):
    assert cli_code("experiment", *flags, "--quick") == 2
    assert message in capsys.readouterr().err


def test_a_world_size_that_is_no_number_is_one_line():
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "resnet_cifar", "models"], capture_output=True, text=True,
                          env={**os.environ, "WORLD_SIZE": "abc"}, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "WORLD_SIZE must be a whole number" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_and_usage_errors_answer_before_pytorch_loads():
    import subprocess
    import sys

    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('torch loaded' if 'torch' in sys.modules else 'torch not loaded'))\n"
        "from resnet_cifar.entry import main\n"
        "sys.argv = ['resnet-cifar', *sys.argv[1:]]\n"
        "main()"
    )
    for args in (["--help"], ["train", "--help"], ["train", "--no-such-flag"], ["predict"]):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode in (0, 2) and done.stdout.strip().endswith("torch not loaded"), done.stdout
