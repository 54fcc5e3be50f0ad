"""The web application: a self-contained page (`GET /`), `POST /api/predict` (the JSON of `predict --json`),
`POST /api/explain` (that, plus each image's 32x32 view and its class-activation map as PNG data URLs) and
`GET /api/health` (weights, model, device, precision, limits).

Uploads are multipart/form-data files. They are read into memory only (the request size is bounded before parsing,
and the parser never spools to disk), decoded by the same rule as `predict` (inference/images.py: decompression
bombs refused from the header), and each bad file is answered with its reason beside the good ones. A request that
cannot be served at all (too big, too many files, no file, nothing readable) gets a 4xx JSON `{"error": ...}`; the
server keeps serving. The model runs one request at a time (a lock: Captum's hooks are per model, and 2 cores gain
nothing from two at once).
"""

from __future__ import annotations

import base64
import threading
from dataclasses import asdict, dataclass
from importlib import resources

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.errors import ImageError
from resnet_cifar.inference.cam import explain_loaded
from resnet_cifar.inference.images import decode_image
from resnet_cifar.inference.loading import LoadedModel

MB = 2**20


@dataclass(frozen=True)
class Limits:
    max_files: int = 16
    max_file_bytes: int = 10 * MB

    @property
    def request_bytes(self) -> int:
        return self.max_files * (self.max_file_bytes + 4096)  # each part's headers and boundary fit in 4 KiB


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def in_memory_parser(limits: Limits) -> type[MultiPartParser]:
    class InMemoryParser(MultiPartParser):
        spool_max_size = limits.request_bytes + 1  # never rolls over to a temporary file: nothing touches the disk

    return InMemoryParser


class Classifier:
    """The loaded weights behind the page: top-5 and maps of uploaded images, one request at a time."""

    def __init__(self, loaded: LoadedModel, tta: int = 1, cam_layer: str | None = None):
        self.loaded, self.tta, self.cam_layer = loaded, tta, cam_layer
        self.lock = threading.Lock()

    def answer(self, uploads: list[tuple[str, bytes]], with_pictures: bool, top_k: int = 5) -> list[dict]:
        """One entry per upload, in order: {"file", "top", "error"} as `predict --json` (and pictures if asked)."""
        entries, images, readable = [], [], []
        for name, data in uploads:
            try:
                images.append(decode_image(data, name))
                readable.append(len(entries))
                entries.append({"file": name, "top": None, "error": None})
            except ImageError as error:
                entries.append({"file": name, "top": None, "error": str(error).removeprefix(f"{name}: ")})
        if images:
            batch = torch.stack(images)
            with self.lock:
                explanation = explain_loaded(self.loaded, batch, tta=self.tta, layer=self.cam_layer, top=1)
            for position, index in enumerate(readable):
                entries[index]["top"] = _top(explanation.probabilities[position], top_k)
                if with_pictures:
                    entries[index].update(self._pictures(batch[position], explanation.maps[position, 0]))
                    entries[index]["cam_class"] = CLASSES[int(explanation.classes[position, 0])]
        return entries

    @staticmethod
    def _pictures(image: torch.Tensor, cam: torch.Tensor) -> dict:
        from resnet_cifar.viz.cam import overlay, png_bytes
        from resnet_cifar.viz.pictures import upsample

        def url(pixels) -> str:
            return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode()

        return {"view": url(upsample(image, 128)), "cam": url(overlay(image, cam, 128))}


def _top(probabilities: torch.Tensor, k: int) -> list[dict]:
    values, indices = probabilities.topk(k)
    return [
        {"class": CLASSES[i], "probability": round(float(p), 6)}
        for p, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


async def read_uploads(request: Request, limits: Limits) -> list[tuple[str, bytes]]:
    """The uploaded files (name, bytes), or UploadError with the status and a sentence saying what was wrong."""
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise UploadError(411, "send the images as multipart/form-data with a Content-Length")
    if int(length) > limits.request_bytes:
        raise UploadError(413, f"the upload is {int(length) / MB:.1f} MB; at most {limits.request_bytes / MB:.0f} MB")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UploadError(415, "send the images as multipart/form-data (a form with file fields)")
    parser = in_memory_parser(limits)(request.headers, request.stream(), max_files=limits.max_files, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        too_many = "Too many files" in error.message
        raise UploadError(
            413 if too_many else 400,
            f"too many files: at most {limits.max_files} per request" if too_many else error.message,
        ) from None
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not files:
        raise UploadError(400, "no image in the upload: send one or more files")
    uploads = []
    for upload in files:
        data = await upload.read()
        name = upload.filename or "upload"
        if len(data) > limits.max_file_bytes:
            raise UploadError(
                413, f"{name} is {len(data) / MB:.1f} MB; each image may be at most {limits.max_file_bytes / MB:.0f} MB"
            )
        uploads.append((name, data))
    await form.close()
    return uploads


def create_app(classifier: Classifier, limits: Limits = Limits()) -> FastAPI:
    app = FastAPI(title="resnet-cifar", docs_url=None, redoc_url=None, openapi_url=None)
    page = resources.files("resnet_cifar.serve").joinpath("page.html").read_text(encoding="utf-8")
    loaded = classifier.loaded

    @app.exception_handler(UploadError)
    async def refused(request: Request, error: UploadError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/health")
    def health() -> dict:
        return {
            "status": "ok",
            "weights": str(loaded.path),
            "model": loaded.name,
            "device": str(loaded.runtime.device),
            "precision": "bf16" if loaded.runtime.bf16 else "fp32",
            "tta": classifier.tta,
            "temperature": loaded.temperature,
            "normalization": loaded.normalization.as_dict(),
            "classes": list(CLASSES),
            "limits": {**asdict(limits), "request_bytes": limits.request_bytes},
        }

    async def serve(request: Request, with_pictures: bool) -> JSONResponse:
        top_k = request.query_params.get("top_k", "5")
        if not top_k.isdigit() or not 1 <= int(top_k) <= len(CLASSES):
            raise UploadError(400, f"top_k must be a whole number from 1 to {len(CLASSES)}, got {top_k!r}")
        uploads = await read_uploads(request, limits)
        entries = await _in_thread(classifier.answer, uploads, with_pictures, int(top_k))
        if all(entry["error"] for entry in entries):
            reasons = "; ".join(f"{e['file']}: {e['error']}" for e in entries)
            return JSONResponse({"error": f"no readable image ({reasons})", "results": entries}, status_code=422)
        return JSONResponse(entries)

    @app.post("/api/predict")
    async def predict(request: Request) -> JSONResponse:
        return await serve(request, with_pictures=False)

    @app.post("/api/explain")
    async def explain_images(request: Request) -> JSONResponse:
        return await serve(request, with_pictures=True)

    return app


async def _in_thread(function, *args):
    """Run the model's work off the event loop, so the server answers health checks while it computes."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)
