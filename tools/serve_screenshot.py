"""docs/serve.png: the page of `resnet-cifar serve` (shipped weights) with three CIFAR-10 test images and a text file.

    python tools/serve_screenshot.py [--output docs/serve.png]

Starts a real server on a free local port, uploads the first test image of automobile, ship and cat (enlarged to
128x128 PNGs, as a user's pictures would be bigger than 32x32) and a text file named like an image, through Debian's
Chromium driven by Playwright, and saves the page at a desktop width.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

from resnet_cifar.data.cifar10 import CLASSES, load_split
from resnet_cifar.data.locate import find_dataset

SHOWN = ("automobile", "ship", "cat")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_uploads(folder: Path) -> list[Path]:
    test = load_split(find_dataset(None).folder, "test")
    paths = []
    for name in SHOWN:
        index = int((test.labels == CLASSES.index(name)).nonzero()[0])
        picture = Image.fromarray(test.images[index].permute(1, 2, 0).numpy()).resize((128, 128), Image.LANCZOS)
        paths.append(folder / f"shot_{name}.png")
        picture.save(paths[-1])
    paths.append(folder / "shot_notes.png")
    paths[-1].write_text("this is not an image")
    return paths


def wait_until_serving(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if process.poll() is not None:
            raise SystemExit("resnet-cifar serve exited")
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"resnet-cifar serve did not answer within {seconds:.0f} s")


def main() -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="docs/serve.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "resnet_cifar", "serve", "--port", str(port)])
    try:
        wait_until_serving(url, process)
        with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
            uploads = write_uploads(Path(folder))
            browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 960, "height": 800})
            page.goto(url)
            page.wait_for_selector("body[data-ready=yes]", timeout=20_000)
            page.set_input_files("#files", [str(path) for path in uploads])
            page.wait_for_selector("article.card.failed", timeout=60_000)
            page.wait_for_function(f"document.querySelectorAll('article.card').length == {len(uploads)}")
            page.screenshot(path=args.output, full_page=True)
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
