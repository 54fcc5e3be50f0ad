"""The command line on small real data: the training run as a user starts it, a process of its own; the commands
that use it in this process through the same entry (tests/commands.py), each as exit code, stdout and stderr."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from commands import run_cli
from repo_scripts import load_script, run_script
from resnet_cifar.runtime import choose_runtime

REPO = Path(__file__).resolve().parents[2]


def cli(
    *args: str, cwd: Path, env: dict | None = None, check: bool = True, process: bool = False
) -> subprocess.CompletedProcess:
    """`resnet-cifar ARGS` in this process, or in a process of its own (`process`), as a user runs it."""
    if process:
        command = [sys.executable, "-m", "resnet_cifar", *args]
        result = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
        )
    else:
        result = run_cli(*args, cwd=cwd, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def trained_run(cifar_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("cli")
    (work / "tiny.yaml").write_text(
        "base: " + str(REPO / "configs" / "fast80.yaml") + "\n"
        "train_size: 1000\nval_size: 500\nepochs: 2\nbatch_size: 100\ndevice: cpu\n"  # bf16: auto, the default
        "model_options: {widths: [16, 32, 64], blocks: [1, 0, 1], stem_width: 16}\n"
        "tta: 2\ntta_share: 0.3\n"  # six views for the 30% least confident: evaluate must reproduce that too
    )
    result = cli("train", "--config", "tiny.yaml", "--data-dir", str(cifar_dir), cwd=work, process=True)
    return work, result


def test_train_prints_test_accuracy_last_and_writes_the_run(trained_run):
    work, result = trained_run
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("test_accuracy=0.")
    accuracy = float(last_line.split("=")[1])
    assert 0.15 < accuracy < 1.0
    run = work / "outputs" / "tiny"
    expected = [
        "config.yaml",
        "metrics.csv",
        "last.safetensors",
        "last.json",
        "best.safetensors",
        "results.json",
        "inference.png",
        "curves.png",
        "confusion_matrix.png",
    ]
    for name in expected:
        assert (run / name).is_file(), name
    assert "train_size: 1000" in (run / "config.yaml").read_text()
    assert not (work / "outputs" / "inference.png").exists()  # only `make train` publishes its picture
    with Image.open(run / "inference.png") as picture:
        assert picture.size[0] > 1000 and picture.size[1] > 700
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert header == "epoch,step,lr,train_loss,train_acc,val_loss,val_acc,seconds,images_per_s,val_seconds"
    assert "\r" not in result.stdout  # no progress bar redraws in a log
    header = result.stdout.splitlines()[0]  # the run header says where and in what precision, and why
    chosen = choose_runtime("cpu", "auto")  # this machine's decision: the one the run must have made and recorded
    assert header.endswith(f"; cpu ({chosen.reason}), {chosen.threads} threads"), header
    assert json.loads((run / "results.json").read_text())["runtime"]["precision"] == chosen.precision
    allocator = json.loads((run / "results.json").read_text())["runtime"]["allocator"]  # set by the entry point
    assert allocator != "not set" and (platform.libc_ver()[0] != "glibc" or allocator.startswith("glibc")), allocator
    assert yaml.safe_load((run / "config.yaml").read_text())["precision"] == "auto"  # the request; the answer above
    calibration = json.loads((run / "results.json").read_text())["calibration"]  # fitted on validation, kept
    assert calibration["fitted_on"] == "validation" and calibration["temperature"] > 0
    assert json.loads((run / "last.json").read_text())["calibration"]["temperature"] == calibration["temperature"]
    assert {"ece_before", "ece_after", "nll_before", "nll_after"} <= set(calibration["test"])


def test_precision_flag_takes_auto_bf16_fp32_and_nothing_else(tmp_path):
    bad = cli("train", "--precision", "maybe", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "precision: must be one of auto, bf16, fp32" in bad.stderr
    old = cli("evaluate", "x", "--bf16", cwd=tmp_path, check=False)
    assert old.returncode == 2 and "did you mean --precision" in old.stderr


def test_the_two_commands_benchmark_reads_the_folder_the_training_wrote(trained_run):
    """benchmarks/two_commands.py takes `make train`'s precision from the run it made, named on its first line (an
    earlier run may hold outputs/fast80)."""
    work, result = trained_run
    folder = load_script("benchmarks/two_commands.py").trained_folder(result.stdout)
    assert folder == Path("outputs/tiny") and (work / folder / "config.yaml").is_file()


def test_evaluate_reproduces_the_training_accuracy(trained_run, cifar_dir):
    work, result = trained_run
    trained = result.stdout.strip().splitlines()[-1]
    evaluated = cli("evaluate", "outputs/tiny", "--data-dir", str(cifar_dir), cwd=work)
    assert evaluated.stdout.strip().splitlines()[-1] == trained
    results = json.loads((work / "outputs" / "tiny" / "results.json").read_text())
    assert results["images"] == 10_000 and len(results["per_class"]) == 10
    assert sum(map(sum, results["confusion_matrix"])) == 10_000
    other = cli("evaluate", "outputs/tiny", "--tta", "0", "--data-dir", str(cifar_dir), cwd=work)
    assert "TTA level 0" in other.stdout
    assert (work / "outputs" / "tiny" / "results-last-tta0.json").is_file()


def test_tta_share_benchmark_reads_the_validation_split_of_a_run(trained_run):
    """Share 0 is the single view the run validated with, so its accuracy is the run's last val_acc."""
    work, _ = trained_run
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        printed = run_script("benchmarks/tta_share.py", "outputs/tiny", "--shares", "1", "0.3", "0", "--rounds", "1")
    rows = {float(line.split()[0]): line.split() for line in printed.splitlines()[-3:]}
    assert sorted(rows) == [0.0, 0.3, 1.0] and [rows[s][1] for s in (0.0, 0.3, 1.0)] == ["1.0", "2.5", "6.0"]
    last = (work / "outputs" / "tiny" / "metrics.csv").read_text().splitlines()[-1].split(",")
    header = (work / "outputs" / "tiny" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert rows[0.0][2] == f"{float(last[header.index('val_acc')]):.2%}"


def test_plot_rewrites_the_pictures(trained_run, cifar_dir):
    work, _ = trained_run
    run = work / "outputs" / "tiny"
    (run / "curves.png").unlink()
    out = cli("plot", "outputs/tiny", "--data-dir", str(cifar_dir), cwd=work)
    assert "curves.png" in out.stdout and (run / "curves.png").is_file()


def test_bad_config_fails_at_once_with_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("modle: resnet20\n")
    result = cli("train", "--config", "bad.yaml", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "resnet-cifar: error: bad.yaml: unknown config key 'modle'; did you mean 'model'?"
    assert not (tmp_path / "outputs").exists()


def test_models_and_data_verify(cifar_dir, tmp_path):
    table = cli("models", "resnet*0", cwd=tmp_path).stdout
    assert "| resnet20 | cifar-resnet | 20 | 0.27M | 0.27M |" in table
    shipped = cli("models", "--shipped", cwd=tmp_path).stdout
    assert "| robust | fastnet | 1,093,272 | 92.50% | float32 |" in shipped
    verify = cli("data", "verify", "--data-dir", str(cifar_dir), cwd=tmp_path).stdout
    assert "data_batch_3.bin   OK" in verify and "all files verified" in verify


def test_missing_data_is_one_clear_message(tmp_path):
    env = {"RESNET_CIFAR_DATA": str(tmp_path / "nowhere"), "RESNET_CIFAR_URL": "http://127.0.0.1:9/none.tar.gz"}
    result = cli("data", "verify", cwd=tmp_path, env=env, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("resnet-cifar: error: CIFAR-10 not found. Looked in:")
    assert "Traceback" not in result.stderr
