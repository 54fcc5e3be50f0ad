"""Every machine kind's path, on every machine: the precision decision from faked facts (tests/machines.py), and the
entry points run for real under each CPU kind with the users' default `precision: auto`.

Under a kind whose decision is bf16, bf16 autocast really runs: natively on a Zen 4, emulated on an AVX2 CPU (so
the data here is small: a fabricated dataset of 300 training and 60 test images)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from PIL import Image

from fakes import write_fake
from machines import CPU_KINDS, CUDA_KINDS
from resnet_cifar import cli, runtime
from resnet_cifar.data import checksums
from resnet_cifar.errors import ConfigError

CPU = torch.device("cpu")


# --- the decision -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CPU_KINDS))
def test_auto_chooses_from_the_cpus_facts(machine, name):
    kind = machine(name)
    chosen = runtime.choose_runtime("auto", "auto")
    assert chosen.device == CPU
    assert chosen.bf16 is kind.bf16, chosen.reason
    assert chosen.reason.startswith(runtime.cpu_isa())


def test_a_busy_machine_does_not_change_the_decision(machine):
    """A probe disturbed by another process (bf16 measured 0.42x fp32's speed) still leaves native bf16 on: the
    probe only vetoes bf16 that is several times slower, which is what emulation looks like (10-400x)."""
    machine("avx512_bf16_busy")
    assert runtime.choose_runtime("cpu", "auto").bf16 is True
    runtime.clear_caches()
    machine("avx512_bf16_emulated")
    chosen = runtime.choose_runtime("cpu", "auto")
    assert chosen.bf16 is False and "40x slower" in chosen.reason


def test_the_probe_runs_from_any_grad_mode_and_moves_no_seeded_stream(machine):
    fp32_seconds, bf16_seconds = machine("avx512_bf16").probe_seconds
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    with torch.no_grad():
        assert runtime.choose_runtime("cpu", "auto").bf16 is True
    assert torch.equal(torch.rand(3), expected)
    runtime.clear_caches()
    with torch.inference_mode():
        assert runtime.bf16_speedup(CPU) == fp32_seconds / bf16_seconds


def test_explicit_bf16_on_an_emulating_cpu_says_so_once_and_goes_on(machine, capsys):
    machine("avx2")
    use, reason = runtime.choose_precision(CPU, "bf16")
    assert use == "bf16" and "emulated" in reason
    runtime.choose_precision(CPU, "bf16")
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "emulated" in warning[0]


@pytest.mark.parametrize("name", sorted(CUDA_KINDS))
def test_auto_chooses_from_the_gpus_facts(machine, name):
    machine("avx2")
    kind = machine.cuda(name)
    chosen = runtime.choose_runtime("auto", "auto")
    assert chosen.device.type == "cuda"
    assert chosen.bf16 is kind.bf16 and chosen.reason.startswith(kind.name)
    assert runtime.choose_runtime("cuda:0", "fp32").bf16 is False
    if not kind.bf16_supported:
        with pytest.raises(ConfigError, match="does not support bfloat16"):
            runtime.choose_runtime("cuda", "bf16")


def test_recorded_precision_is_reused_where_it_is_native(machine):
    """Evaluating weights tested in fp32 on a bf16 machine reproduces fp32; bf16 weights on an AVX2 machine run in
    fp32 rather than emulated bf16."""
    machine("avx512_bf16")
    assert runtime.choose_runtime("cpu", "auto", recorded="fp32").bf16 is False
    assert runtime.choose_runtime("cpu", "auto", recorded="bf16").bf16 is True
    assert runtime.choose_runtime("cpu", "bf16", recorded="fp32").bf16 is True  # an explicit request wins
    runtime.clear_caches()
    machine("avx2")
    chosen = runtime.choose_runtime("cpu", "auto", recorded="bf16")
    assert chosen.bf16 is False and "tested in bf16" in chosen.reason


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "cuda:7", "cpu:1", "tpu", "", "cuda:x"])
def test_unknown_or_missing_devices_are_one_clear_error(machine, device):
    machine("avx2")
    with pytest.raises(ConfigError, match="device"):
        runtime.choose_runtime(device)


def test_cuda_devices_past_the_last_are_refused(machine):
    machine("avx2")
    machine.cuda("h100", count=2)
    assert runtime.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match="has 2 CUDA device"):
        runtime.resolve_device("cuda:7")


def test_more_threads_than_cores_are_refused():
    with pytest.raises(ConfigError, match="threads: must be 0"):
        runtime.choose_runtime("cpu", "fp32", threads=runtime.available_cores() + 1)


# --- the entry points, for real, under each CPU kind ------------------------------------------------------------------

ENTRY_KINDS = ["avx2", "avx512", "avx512_bf16", "avx512_bf16_capped_avx2", "avx512_bf16_emulated", "amx"]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """A fabricated dataset in the binary format (60 images per file), with its checksum table."""
    folder = tmp_path_factory.mktemp("small-cifar")
    table, _ = write_fake(folder, "binary", n=60)
    return folder, table


def _cli(*args: str) -> int:
    return cli.main([str(arg) for arg in args])


@pytest.mark.parametrize("name", ENTRY_KINDS)
def test_every_entry_point_runs_under_each_cpu_kind(machine, name, small_data, tmp_path, monkeypatch, capsys):
    """train (precision left auto), stop and resume, evaluate, plot, predict (CLI and API, from no_grad and
    inference_mode), export: each runs, and each uses the one precision the machine's facts decide."""
    kind = machine(name)
    folder, table = small_data
    for file_name, check in table.items():
        monkeypatch.setitem(checksums.BINARY_FILES, file_name, check)
    monkeypatch.chdir(tmp_path)
    flags = [
        *("--model", "fastnet", "--model-options", "{widths: [8, 16, 16], blocks: [1, 0, 0], stem_width: 8}"),
        *("--train-size", "200", "--val-size", "100", "--batch-size", "50", "--epochs", "2"),
        *("--data-dir", folder, "--no-download", "--progress", "none", "--threads", "1", "--name", "run"),
        "--no-plots",  # `plot` draws them below
    ]
    assert _cli("train", *flags, "--stop-after-epochs", "1") == 0
    run = tmp_path / "outputs" / "run"
    assert yaml.safe_load((run / "config.yaml").read_text())["precision"] == "auto"  # the request...
    precision = "bf16" if kind.bf16 else "fp32"
    assert json.loads((run / "last.json").read_text())["runtime"]["precision"] == precision  # ...and the answer
    assert _cli("train", "--resume", run) == 0
    trained = capsys.readouterr().out.strip().splitlines()[-1]
    results = json.loads((run / "results.json").read_text())
    assert results["runtime"]["precision"] == precision

    assert _cli("evaluate", run, "--data-dir", folder) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == trained
    (run / "test_logits.safetensors").unlink()  # plot must evaluate again (the saved-logits path: test_cli.py)
    assert _cli("plot", run, "--data-dir", folder) == 0
    assert "inference.png" in capsys.readouterr().out

    Image.new("RGB", (40, 30), (200, 120, 40)).save(tmp_path / "probe.png")
    for weights in ([], ["--weights", run]):
        assert _cli("predict", tmp_path / "probe.png", "--json", *weights) == 0
        top = json.loads(capsys.readouterr().out)[0]["top"]
        assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"]

    from resnet_cifar.inference import load_model
    from resnet_cifar.inference.classify import classify
    from resnet_cifar.inference.images import load_image
    from resnet_cifar.inference.tta import predict_logits

    runtime.clear_caches()  # the API from a fresh start: the probe may run inside no_grad / inference_mode
    with torch.no_grad():
        loaded = load_model(None)
    assert loaded.runtime.bf16 is kind.bf16
    image = load_image(tmp_path / "probe.png").unsqueeze(0)
    with torch.inference_mode():
        assert classify(loaded.model, image, top_k=1)[0][0][0]
    assert predict_logits(loaded.model, image, tta=2).shape == (1, 10)

    assert _cli("export", "--format", "torchscript", "--weights", run, "--output", tmp_path / "m.pt") == 0
    assert (tmp_path / "m.pt").is_file()
