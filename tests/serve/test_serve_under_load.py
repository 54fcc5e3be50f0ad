"""The server under hostile load, on loopback only: sockets that trickle or idle cannot lock other clients out (the
body budget counts bytes received, and a body has a time limit), any one allowed upload fits the budget, odd query
strings are a 400, and memory returns near its baseline after a burst of large images."""

from __future__ import annotations

import io
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from conftest import rest_of_output
from resnet_cifar.inference.loading import load_model
from resnet_cifar.serve.app import MB, Batching, Classifier, Limits, create_app


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


SMALL = png(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))


class Running:
    """A real uvicorn server of `create_app` on 127.0.0.1, in a thread of this process."""

    def __init__(self, limits: Limits):
        classifier = Classifier(load_model(None, device="cpu"), limits=limits, batching=Batching(max_images=16))
        self.listening = socket.socket()
        self.listening.bind(("127.0.0.1", 0))
        self.listening.listen(64)
        self.port = self.listening.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(create_app(classifier), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.listening]}, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.listening.close()

    def post(self, data: bytes = SMALL, query: str = "", files: int = 1) -> int:
        parts = [("file", (f"f{i}.png", data, "image/png")) for i in range(files)]
        return httpx.post(f"http://127.0.0.1:{self.port}/api/predict{query}", files=parts, timeout=60).status_code


def declare_and_hold(port: int, stop: threading.Event, trickle: bool) -> None:
    """Declare a 128 MiB body, then send a byte a second (`trickle`) or nothing, until told to stop or dropped."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {128 * MB}\r\n\r\n".encode()
        )
        while not stop.wait(0.5):
            if trickle:
                try:
                    sock.sendall(b"-")
                except OSError:
                    return


def test_two_sockets_that_trickle_lock_nobody_out():
    limits = Limits(max_files=4, max_file_bytes=MB, max_bytes_in_flight=8 * MB, idle_seconds=2.0, body_seconds=30.0)
    with Running(limits) as running:
        stop = threading.Event()
        holders = [threading.Thread(target=declare_and_hold, args=(running.port, stop, True)) for _ in range(2)]
        for holder in holders:
            holder.start()
        time.sleep(1.0)
        try:
            statuses = [running.post() for _ in range(20)]
        finally:
            stop.set()
        assert statuses == [200] * 20


def test_a_socket_that_sends_nothing_is_answered_408_and_frees_what_it_held():
    limits = Limits(max_files=2, max_file_bytes=MB, idle_seconds=1.0, body_seconds=5.0)
    with Running(limits) as running, socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 1000\r\n\r\n--b\r\n"
        )
        answer = b""
        while b"stalled" not in answer and (chunk := sock.recv(4096)):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408") and b"stalled" in answer
        assert running.post() == 200


def test_any_one_allowed_upload_fits_the_budget_of_an_idle_server():
    """--max-files and --max-file-mb larger than the default budget: an idle server takes such an upload (it once
    said 503 busy to it); what cannot be read is a 422, not a refusal for want of memory."""
    limits = Limits(max_files=2, max_file_bytes=40 * MB, max_bytes_in_flight=16 * MB)
    with Running(limits) as running:
        assert running.post(data=b"\0" * (30 * MB), files=2) == 422


def test_odd_top_k_values_are_a_400_not_a_traceback():
    with Running(Limits()) as running:
        for query in ("?top_k=" + "9" * 5000, "?top_k=²", "?top_k=0", "?top_k=-1", "?top_k=11"):
            assert running.post(query=query) == 400
        assert running.post(query="?top_k=3") == 200


def test_the_listening_address_is_said_as_it_is():
    from resnet_cifar.cli.serve_command import is_loopback, url_of

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
    assert url_of("::1", 8080) == "http://[::1]:8080/" and url_of("127.0.0.1", 0) == "http://127.0.0.1:0/"


def start(*flags: str) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "resnet_cifar", "serve", "--host", "127.0.0.1", *flags]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, process.stdout.readline()


def resident_mb(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_port_0_says_the_port_it_got_and_memory_returns_after_a_burst():
    process, first = start("--port", "0", "--device", "cpu")
    try:
        found = re.search(r"at http://127\.0\.0\.1:(\d+)/", first)
        assert found and int(found.group(1)) > 0, first
        port = int(found.group(1))
        url = f"http://127.0.0.1:{port}/api/predict"

        def post(data: bytes) -> int:
            return httpx.post(url, files={"f": ("f.png", data, "image/png")}, timeout=120).status_code

        assert post(SMALL) == 200
        before = resident_mb(process.pid)
        stripes = np.zeros((6300, 6300), dtype=np.uint16)  # 40 megapixels of 16-bit grey in ~90 KB
        stripes[::3] = 50_000
        big = png(stripes)
        burst = [threading.Thread(target=post, args=(big,)) for _ in range(4)]
        for thread in burst:
            thread.start()
        for thread in burst:
            thread.join()
        time.sleep(1.0)
        assert resident_mb(process.pid) < before + 120  # it once stayed ~2.8 GB above its baseline
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(("flags", "message"), [(["--max-image-mp", "1e308"], "at most 179"),
                                                (["--cam-layer", "fc"], "gives no feature maps")])  # fmt: skip
def test_impossible_server_settings_are_one_line(flags, message):
    process, first = start("--port", "0", *flags)
    output = first + rest_of_output(process, timeout=60)
    assert process.returncode == 2 and message in output and "Traceback" not in output
