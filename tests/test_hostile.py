"""What a hostile user tries: files written over, metadata rewritten, NaN weights, tiny files that decode huge,
odd number spellings, files that are not files, and a server asked to stop, to listen where it cannot, or to
answer a client that left. Each is answered in one line and loses nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml

from commands import run_cli
from resnet_cifar import run_folder
from resnet_cifar.checkpoint import WRITTEN_KEYS, load_checkpoint, save_checkpoint
from resnet_cifar.config import load_config, parse_cli_value
from resnet_cifar.errors import CheckpointError, ConfigError
from resnet_cifar.inference.loading import DEFAULT_WEIGHTS, load_model
from resnet_cifar.models import create_model

CLI = [sys.executable, "-m", "resnet_cifar"]


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=cwd)


def shipped() -> tuple[dict, dict]:
    tensors, metadata = load_checkpoint(DEFAULT_WEIGHTS)
    return tensors, {k: v for k, v in metadata.items() if k not in WRITTEN_KEYS}


# --- 1. export never writes over a file unasked, nor over a run's checkpoint ---


def test_export_asks_for_force_and_never_writes_over_a_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    tensors, metadata = shipped()
    save_checkpoint(run / "last.safetensors", tensors, metadata)
    (run / "config.yaml").write_text("model: fastnet\n")
    before = (run / "last.safetensors").read_bytes()

    refused = cli("export", "--format", "torchscript", "--weights", str(run), "--output", str(run / "last.safetensors"))
    assert refused.returncode == 2 and "training run" in refused.stderr and "Traceback" not in refused.stderr
    forced = cli(
        "export", "--format", "torchscript", "--weights", str(run), "--output", str(run / "last.safetensors"), "--force"
    )
    assert forced.returncode == 2 and "never written over" in forced.stderr
    assert (run / "last.safetensors").read_bytes() == before

    other = tmp_path / "model.pt"
    other.write_bytes(b"mine")
    kept = cli("export", "--format", "torchscript", "--output", str(other))
    assert kept.returncode == 2 and "--force" in kept.stderr and other.read_bytes() == b"mine"
    assert cli("export", "--format", "torchscript", "--output", str(other), "--force").returncode == 0
    assert other.read_bytes()[:2] == b"PK"


def test_export_into_a_place_that_cannot_be_written_names_it(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = cli("export", "--format", "torchscript", "--output", str(blocker / "model.pt"))
    assert result.returncode == 2 and str(blocker / "model.pt") in result.stderr
    assert "Traceback" not in result.stderr


# --- 2. a run killed before its first checkpoint leaves its name free ---


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_folder_left_with_only_a_dead_lock_is_reclaimed(tmp_path):
    left = tmp_path / "tiny"
    left.mkdir()
    (left / ".lock").write_text(f"pid {dead_pid()}")
    (left / "config.yaml").write_text("model: fastnet\n")
    assert run_folder.claim_new(tmp_path / "tiny") == left
    assert not (left / ".lock").exists() and not (left / "config.yaml").exists()


def test_a_live_or_started_run_keeps_its_folder(tmp_path):
    live = tmp_path / "live"
    with run_folder.RunLock(live):  # held by this process
        assert run_folder.claim_new(live) == tmp_path / "live-2"
    started = tmp_path / "started"
    started.mkdir()
    (started / ".lock").write_text(f"pid {dead_pid()}")
    (started / "last.safetensors").write_bytes(b"x")
    assert run_folder.claim_new(started) == tmp_path / "started-2"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / ".lock").write_text(f"pid {dead_pid()}")
    (foreign / "notes.txt").write_text("the user's")
    assert run_folder.claim_new(foreign) == tmp_path / "foreign-2"


# --- 3. --resume never drops an edit of config.yaml without a word ---


def test_resume_refuses_an_edited_config_and_says_when_it_rewrites_a_deleted_one(tmp_path, cifar_dir):
    from tiny import tiny_flags

    flags = tiny_flags(epochs=2, stop_after_epochs=1, train_size=200, val_size=100)
    first = cli("train", *flags, "--output-dir", str(tmp_path), "--name", "run", "--data-dir", str(cifar_dir))
    assert first.returncode == 0, first.stderr
    run = tmp_path / "run"
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "epochs": 5, "lr": 0.05}))
    edited = cli("train", "--resume", str(run))
    assert edited.returncode == 2 and "epochs" in edited.stderr and "lr" in edited.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 5  # the edit is still there
    (run / "config.yaml").unlink()
    resumed = cli("train", "--resume", str(run))
    assert resumed.returncode == 0 and "was missing" in resumed.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 2


# --- 4. the metadata is covered by the checksum ---


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
    result = cli("predict", str(altered), "--weights", str(altered))
    assert result.returncode == 2 and "altered" in result.stderr
    stripped = {k: v for k, v in metadata.items() if k != "metadata_sha256"}
    safetensors.torch.save_file(tensors, str(altered), metadata={"resnet_cifar": json.dumps(stripped)})
    with pytest.raises(CheckpointError, match="no checksum"):
        load_checkpoint(altered)


# --- 5. non-finite weights and temperatures are refused, named ---


def test_nan_weights_and_temperatures_are_refused_by_name(tmp_path):
    tensors, metadata = shipped()
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


# --- 6. a tiny PNG that decodes huge ---

PEAK = """
import resource, sys
from PIL import Image
from resnet_cifar.inference.images import load_image
Image.new("1", ({side}, {side})).save(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
load_image(sys.argv[1])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_decoding_a_huge_one_bit_png_costs_its_bytes_once(tmp_path):
    """A 17 KB PNG of 12,000 x 12,000 one-bit pixels: 144 MB decoded. Made into RGB at full size and cropped, it
    cost ~1.7 GB; reduced at once it costs the decoded bytes and one 8-bit copy."""
    path = tmp_path / "huge.png"
    result = subprocess.run(
        [sys.executable, "-c", PEAK.format(side=12_000), str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert path.stat().st_size < 50_000
    assert int(result.stdout) < 450, f"decoding took {result.stdout.strip()} MB more"


def test_the_server_refuses_images_over_its_pixel_limit_from_the_header():
    from fastapi.testclient import TestClient
    from PIL import Image

    from resnet_cifar.serve.app import Classifier, Limits, create_app

    client = TestClient(create_app(Classifier(load_model(None, device="cpu"), limits=Limits(max_image_pixels=10**6))))
    import io

    big = io.BytesIO()
    Image.new("1", (2000, 2000)).save(big, format="PNG")
    response = client.post("/api/predict", files=[("files", ("big.png", big.getvalue(), "image/png"))])
    assert response.status_code == 422 and "megapixels" in response.json()["error"]


# --- 7. ordinary scientific notation ---


def test_scientific_notation_is_a_float_in_yaml_and_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("weight_decay: 5e-4\nlr: 1E-1\nwarmup_start: .5\n")
    config = load_config(path, {"label_smoothing": parse_cli_value("1e-1"), "momentum": parse_cli_value("9_0e-2")})
    assert (config.weight_decay, config.lr, config.warmup_start) == (5e-4, 0.1, 0.5)
    assert (config.label_smoothing, config.momentum) == (0.1, 0.9)
    with pytest.raises(ConfigError, match="finite"):
        load_config(None, {"lr": "inf"})
    assert load_config(None, {"epochs": parse_cli_value("3")}).epochs == 3  # integers stay integers


# --- 8. weights that do not fit say which tensors ---


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


# --- 9. the server's messages ---


def test_serve_refuses_a_bad_port_and_a_taken_one_in_one_line():
    bad = cli("serve", "--port", "99999")
    assert bad.returncode == 2 and "65535" in bad.stderr and "Traceback" not in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = cli("serve", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2 and "cannot listen" in result.stderr and "Traceback" not in result.stderr


def _wait_until_torch_is_mapped(process: subprocess.Popen, limit: float = 30.0) -> None:
    """Block until the process maps PyTorch's libraries: the command's own code runs and its imports are under way.

    A Ctrl-C in the interpreter's first milliseconds, before any of the project's code runs, is Python's own
    business; what the issue asks for is the second or so of imports that follows.
    """
    deadline = time.monotonic() + limit
    maps = Path(f"/proc/{process.pid}/maps")
    while time.monotonic() < deadline and process.poll() is None:
        if "libtorch" in maps.read_text(errors="replace"):
            return
        time.sleep(0.005)
    raise AssertionError("the command never began to import PyTorch")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the imports begin")
@pytest.mark.parametrize("later", [0.0, 0.3, 0.6])
def test_ctrl_c_while_serve_loads_ends_in_one_line(later):
    process = subprocess.Popen(
        [*CLI, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_until_torch_is_mapped(process)
    time.sleep(later)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err and "interrupted" in err


def test_unknown_flags_suggest_only_the_subcommands_own():
    result = cli("train", "--foo")
    assert result.returncode == 2 and "--force" not in result.stderr
    assert "did you mean --force" in cli("export", "--format", "onnx", "--forse").stderr


# --- 10. what is not a file, and pickles ---


def test_predict_names_what_is_not_a_file(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    os.mkfifo(tmp_path / "fifo")
    folder = tmp_path / "folder"
    folder.mkdir()
    os.mkfifo(folder / "pipe")
    result = cli("predict", str(tmp_path / "loop"), str(tmp_path / "fifo"), "/dev/zero", str(folder), "--json")
    answers = {Path(entry["file"]).name: entry["error"] for entry in json.loads(result.stdout)}
    assert "symbolic links" in answers["loop"]
    assert "named pipe" in answers["fifo"] and "named pipe" in answers["pipe"]
    assert "device" in answers["zero"]


def test_a_refused_pickle_is_named_and_weights_only_false_is_never_suggested(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "optimizer": torch.optim.SGD([torch.zeros(1)], lr=0.1)}, path)
    result = cli("import", str(path), "--output", str(tmp_path / "out.safetensors"))
    assert result.returncode == 2 and "torch.optim.sgd.SGD" in result.stderr
    assert "weights_only" not in result.stderr and "False" not in result.stderr
