"""`resnet-cifar serve`: the JSON API (FastAPI's TestClient, and a real uvicorn server under 20 concurrent requests),
bad uploads, and the page driven in a real headless Chromium (Debian's package; `.ci/run` installs it)."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from resnet_cifar.inference.classify import format_json, predict_files
from resnet_cifar.inference.loading import load_model
from resnet_cifar.serve.app import Batching, Classifier, Limits, create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def png_bytes(image: torch.Tensor) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(out, format="PNG")
    return out.getvalue()


def bomb_png() -> bytes:
    """A valid 1x1 PNG whose header claims 20,000 x 20,000 pixels (400 megapixels): refused before decoding."""
    data = bytearray(png_bytes(torch.zeros(3, 1, 1, dtype=torch.uint8)))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 20_000, 20_000)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


@pytest.fixture(scope="module")
def loaded():
    return load_model(None, device="cpu")


@pytest.fixture(scope="module")
def client(loaded):
    return TestClient(create_app(Classifier(loaded, tta=1, limits=Limits(max_files=3, max_file_bytes=3 * 2**20))))


@pytest.fixture(scope="module")
def images(cifar_test):
    return cifar_test.images[:4], cifar_test.labels[:4]


def files(*named: tuple[str, bytes]) -> list:
    return [("files", (name, data, "application/octet-stream")) for name, data in named]


def test_health_names_the_weights_model_device_and_precision(client, loaded):
    health = client.get("/api/health").json()
    assert health["model"] == "fastnet" and health["weights"] == str(loaded.path)
    assert health["device"] == "cpu" and health["precision"] == ("bf16" if loaded.runtime.bf16 else "fp32")
    assert health["limits"]["max_files"] == 3


def test_predict_answers_what_predict_json_prints(client, loaded, images, tmp_path):
    batch, _ = images
    paths = []
    for i, image in enumerate(batch):
        paths.append(tmp_path / f"test{i}.png")
        paths[-1].write_bytes(png_bytes(image))
    expected = json.loads(
        format_json(
            predict_files(
                loaded.model,
                [str(p) for p in paths[:3]],
                top_k=5,
                tta=1,
                runtime=loaded.runtime,
                temperature=loaded.temperature,
                normalization=loaded.normalization,
            )
        )
    )
    response = client.post("/api/predict", files=files(*((p.name, p.read_bytes()) for p in paths[:3])))
    assert response.status_code == 200
    answer = response.json()
    assert [a["file"] for a in answer] == [p.name for p in paths[:3]]
    for got, want in zip(answer, expected, strict=True):
        assert [t["class"] for t in got["top"]] == [t["class"] for t in want["top"]]
        for g, w in zip(got["top"], want["top"], strict=True):
            assert g["probability"] == pytest.approx(w["probability"], abs=2e-3)
        assert got["error"] is None
    three = client.post("/api/predict?top_k=3", files=files(("a.png", paths[0].read_bytes()))).json()
    assert len(three[0]["top"]) == 3


def test_explain_returns_the_view_and_the_map(client, images):
    batch, _ = images
    answer = client.post("/api/explain", files=files(("cat.png", png_bytes(batch[0])))).json()[0]
    for key in ("view", "cam"):
        assert answer[key].startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(answer[key].split(",", 1)[1]))) as picture:
            assert picture.size == (128, 128)
    assert answer["cam_class"] == answer["top"][0]["class"]


def test_bad_uploads_get_a_clear_4xx_and_the_server_keeps_serving(client, images):
    good = png_bytes(images[0][0])
    truncated = good[: len(good) // 2]
    cases = [
        (files(("notes.txt", b"hello, not an image")), 422, "not an image"),
        (files(("half.png", truncated)), 422, "truncated"),
        (files(("bomb.png", bomb_png())), 422, "decompression bomb refused"),
        (files(("empty.png", b"")), 422, "empty file"),
        (files(("big.png", b"\x89PNG" + bytes(3 * 2**20 + 10))), 413, "each image may be at most 3 MB"),
        (files(*((f"{i}.png", good) for i in range(4))), 413, "too many files: at most 3"),
        ([("note", (None, b"a text field, no file"))], 400, "no image in the upload"),
    ]
    for upload, status, message in cases:
        response = client.post("/api/predict", files=upload)
        assert response.status_code == status, (message, response.text)
        assert message in response.json()["error"]
    assert client.post("/api/predict", json={"image": "x"}).status_code == 415
    assert client.post("/api/predict?top_k=11", files=files(("a.png", good))).status_code == 400
    mixed = client.post("/api/predict", files=files(("notes.txt", b"hello"), ("ok.png", good)))
    assert mixed.status_code == 200  # one bad file among good ones is reported in its place, as predict does
    assert mixed.json()[0]["error"] and mixed.json()[1]["top"]
    assert client.get("/api/health").json()["status"] == "ok"


def test_uploads_never_touch_the_disk(client, images, monkeypatch):
    from tempfile import SpooledTemporaryFile

    rolled = []
    monkeypatch.setattr(SpooledTemporaryFile, "rollover", lambda self: rolled.append(self))
    big = png_bytes(torch.randint(0, 256, (3, 800, 800), dtype=torch.uint8))  # ~1.9 MB, over Starlette's 1 MB spool
    assert client.post("/api/predict", files=files(("big.png", big))).status_code == 200
    assert rolled == []


def test_the_page_is_self_contained(client):
    page = client.get("/").text
    assert "<script>" in page and 'name="viewport"' in page
    assert "http://" not in page and "https://" not in page  # no CDN: it works offline


# --- a real server: `resnet-cifar serve` as a user starts it ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(the URL of a real `resnet-cifar serve`, its log file)."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "resnet_cifar", "serve", "--port", str(port), "--device", "cpu"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        while time.perf_counter() - started < 60:
            if process.poll() is not None:
                pytest.fail(f"resnet-cifar serve exited: {log.read_text()}")
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("resnet-cifar serve did not answer within 60 s")
        print(f"resnet-cifar serve answered after {time.perf_counter() - started:.1f} s")
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(served):
    return served[0]


def test_a_client_that_leaves_mid_upload_leaves_no_traceback(served):
    url, log = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(
            b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=f; filename=a.png\r\n\r\n"
        )
        time.sleep(0.3)
    time.sleep(0.5)
    assert httpx.get(f"{url}/api/health").status_code == 200
    assert "Traceback" not in log.read_text()


def test_batched_answers_are_the_unbatched_ones(loaded, cifar_test):
    """Twelve requests at once are gathered into few forward passes; each answer is the one it gets alone."""
    alone = Classifier(loaded, tta=1, batching=Batching(max_images=1))
    together = Classifier(loaded, tta=1, batching=Batching(max_images=64, max_delay=0.2))
    uploads = [[(f"{i}.png", png_bytes(cifar_test.images[i]))] for i in range(12)]
    expected = [alone.answer(upload, with_pictures=False) for upload in uploads]
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda upload: together.answer(upload, with_pictures=False), uploads))
    assert answers == expected
    assert together.batcher.batches < 12 and alone.batcher.batches == 12


def test_twenty_concurrent_requests_all_answer_correctly(server, images):
    batch, _ = images
    uploads = [png_bytes(image) for image in batch]
    expected = [httpx.post(f"{server}/api/predict", files=files(("x.png", data))).json()[0] for data in uploads]

    def ask(i: int):
        response = httpx.post(f"{server}/api/explain", files=files((f"{i}.png", uploads[i % 4])), timeout=60)
        return i, response.status_code, response.json()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(ask, range(20)))
    for i, status, answer in answers:
        assert status == 200 and answer[0]["file"] == f"{i}.png"
        assert answer[0]["top"][0]["class"] == expected[i % 4]["top"][0]["class"]
        assert answer[0]["top"][0]["probability"] == pytest.approx(expected[i % 4]["top"][0]["probability"], abs=1e-4)
    bad = httpx.post(f"{server}/api/explain", files=files(("bomb.png", bomb_png())))
    assert bad.status_code == 422 and httpx.get(f"{server}/api/health").status_code == 200


def test_the_page_in_a_real_browser(server, images, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    batch, _ = images
    picture = tmp_path / "cifar-test-0.png"
    picture.write_bytes(png_bytes(batch[0]))
    expected = httpx.post(f"{server}/api/predict", files=files(("x.png", picture.read_bytes()))).json()[0]
    (tmp_path / "notes.png").write_text("this is not an image")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's width
            page.goto(server)
            page.wait_for_selector("body[data-ready=yes]", timeout=20_000)
            assert "fastnet" in page.text_content("#model")
            page.set_input_files("#files", str(picture))
            card = page.wait_for_selector("article.card:not(.failed)", timeout=30_000)
            assert card.get_attribute("data-top") == expected["top"][0]["class"]
            assert len(card.query_selector_all(".bar")) == 5
            drawn = page.eval_on_selector("img.cam", "img => img.complete && img.naturalWidth")
            assert drawn == 128
            page.set_input_files("#files", str(tmp_path / "notes.png"))
            page.wait_for_selector("article.card.failed", timeout=30_000)
            assert "not an image" in page.text_content("#error")
            assert page.evaluate("document.scrollingElement.scrollWidth") <= 390  # nothing wider than the phone
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000
