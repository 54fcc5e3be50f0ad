"""What the server is asked to listen on and to decode: refusals in one line, limits from the header."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from commands import run_cli
from resnet_cifar.inference.loading import load_model

CLI = [sys.executable, "-m", "resnet_cifar"]


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


def test_serve_refuses_a_bad_port_and_a_taken_one_in_one_line():
    bad = run_cli("serve", "--port", "99999")
    assert bad.returncode == 2 and "65535" in bad.stderr and "Traceback" not in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("serve", "--port", str(taken.getsockname()[1]))
    assert result.returncode == 2 and "cannot listen" in result.stderr and "Traceback" not in result.stderr


def _wait_until_torch_is_mapped(process: subprocess.Popen, limit: float = 30.0) -> None:
    """Block until the process maps PyTorch's libraries: the command's own code runs and its imports are under way.

    A Ctrl-C in the interpreter's first milliseconds, before any of the project's code runs, is Python's own
    business; what matters is the second or so of imports that follows.
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
