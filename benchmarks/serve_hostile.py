"""`resnet-cifar serve` under hostile load, on this machine's loopback only: the server's memory before, during and
after a burst of large 16-bit PNG uploads, and the other clients' success rate while two sockets that declared
128 MiB bodies trickle a byte at a time.

    python benchmarks/serve_hostile.py --seconds 30

The server runs as its own process (`resnet-cifar serve --port 0`); its resident memory is read from /proc. Every
request goes to 127.0.0.1 and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
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
from PIL import Image

from resnet_cifar_lab.scripts import run_main


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def big_grey16() -> bytes:
    """A 6300 x 6300 16-bit grey PNG of ~90 KB: 40 megapixels, under serve's default limit."""
    array = np.zeros((6300, 6300), dtype=np.uint16)
    array[::3, :] = 50_000
    return png(array)


def small_rgb() -> bytes:
    return png(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))


def resident_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1)) / 1024


def start_server(flags: list[str]) -> tuple[subprocess.Popen, int]:
    command = [sys.executable, "-m", "resnet_cifar", "serve", "--port", "0", "--host", "127.0.0.1", *flags]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = server.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if found is None:
        server.kill()
        raise SystemExit(f"the server did not start: {line}{server.stdout.read()}")
    return server, int(found.group(1))


def post(client: httpx.Client, port: int, data: bytes, name: str = "x.png") -> int:
    files = {"file": (name, data, "image/png")}
    try:
        return client.post(f"http://127.0.0.1:{port}/api/predict", files=files, timeout=60).status_code
    except httpx.HTTPError:
        return 0


def trickler(port: int, stop: threading.Event) -> None:
    """A socket that declares a 128 MiB body and sends a byte every second until the server drops it."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = (
            "POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {128 * 2**20}\r\n\r\n"
        )
        sock.sendall(head.encode())
        while not stop.is_set():
            try:
                sock.sendall(b"-")
            except OSError:
                return
            stop.wait(1.0)


def trickle_round(port: int, seconds: float) -> dict:
    stop = threading.Event()
    threads = [threading.Thread(target=trickler, args=(port, stop), daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    client, image, statuses = httpx.Client(), small_rgb(), []
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        statuses.append(post(client, port, image))
    stop.set()
    ok = sum(status == 200 for status in statuses)
    return {"requests": len(statuses), "ok": ok, "success_rate": ok / max(len(statuses), 1)}


def burst_round(server: subprocess.Popen, port: int, count: int) -> dict:
    image, peak = big_grey16(), [0.0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_mb(server.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    threads = [threading.Thread(target=post, args=(httpx.Client(), port, image, f"big{i}.png")) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    time.sleep(3.0)
    return {"during_mb": peak[0], "after_mb": resident_mb(server.pid)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the two sockets trickle")
    parser.add_argument("--burst", type=int, default=4, help="large uploads sent at once")
    args, flags = parser.parse_known_args()
    server, port = start_server(flags)
    try:
        for _ in range(3):
            post(httpx.Client(), port, small_rgb())
        before = resident_mb(server.pid)
        burst = burst_round(server, port, args.burst)
        trickle = trickle_round(port, args.seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"memory: {before:.0f} MB before, {burst['during_mb']:.0f} MB during {args.burst} uploads of a 40-megapixel "
          f"16-bit PNG, {burst['after_mb']:.0f} MB after")  # fmt: skip
    print(f"while two sockets trickle: {trickle['ok']} of {trickle['requests']} other requests answered 200 "
          f"({trickle['success_rate']:.0%})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_main(main))
