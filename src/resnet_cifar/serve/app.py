"""The web application: the page (`GET /`), `POST /api/predict` (the JSON of `predict --json`), `POST /api/explain`
(with each image's view and class-activation map) and `GET /api/health`. Uploads are read into memory only, decoded by
predict's rule, each bad file answered beside the good ones; a request that cannot be served gets a 4xx JSON
`{"error"}`, and the server keeps serving. Memory is bounded: a few images decoded at once, none over the limits, the
bodies of all requests counted as they arrive against one budget (503 beyond it), a stalled body dropped (408)."""

from __future__ import annotations

import asyncio
import base64
import threading
from dataclasses import asdict, dataclass
from importlib import resources

import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from resnet_cifar.allocator import return_freed_memory
from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.errors import ImageError
from resnet_cifar.inference.explain import explain_loaded
from resnet_cifar.inference.images import decode_image
from resnet_cifar.inference.loading import LoadedModel
from resnet_cifar.inference.tta import predict_logits
from resnet_cifar.serve.batcher import Batcher

MB = 2**20


@dataclass(frozen=True)
class Limits:
    max_files: int = 16
    max_file_bytes: int = 10 * MB
    max_image_pixels: int = 40_000_000  # an 8K screenshot is 33 MP; a JPEG is decoded reduced, so photos pass too
    max_decodes: int = 2  # images decoded at once (a 2-core machine gains nothing from more)
    max_bytes_in_flight: int = 256 * MB  # request bodies held at once, all requests together (at least one request)
    idle_seconds: float = 15.0  # a request body that sends nothing for this long is dropped (408)
    body_seconds: float = 120.0  # ... or that has not arrived whole after this long

    @property
    def request_bytes(self) -> int:
        return self.max_files * (self.max_file_bytes + 4096)  # each part's headers and boundary fit in 4 KiB


@dataclass(frozen=True)
class Batching:
    """Dynamic batching of predictions (serve/batcher.py); max_images 1 turns it off."""

    max_images: int = 64
    max_delay: float = 0.005
    # Forward passes run on chunks of exactly this many images (the last one zero-padded): an image's answer is then
    # the same bits whichever requests it was batched with (convolutions sum in an order that depends on the batch
    # shape, and the sixth decimal of a probability would otherwise depend on the company an image kept).
    chunk: int = 8


class UploadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def in_memory_parser(limits: Limits) -> type[MultiPartParser]:
    class InMemoryParser(MultiPartParser):
        spool_max_size = limits.request_bytes + 1  # never rolls over to a temporary file: nothing touches the disk

    return InMemoryParser


class Classifier:
    """The loaded weights behind the page: decodes uploads, batches predictions, explains on request."""

    def __init__(
        self, loaded: LoadedModel, tta: int = 1, cam_layer: str | None = None, limits: Limits = Limits(),
        batching: Batching = Batching(),
    ):
        self.loaded, self.tta, self.cam_layer, self.limits = loaded, tta, cam_layer, limits
        self.lock = threading.Lock()  # the model: one forward pass or explanation at a time
        self.decoding = threading.BoundedSemaphore(limits.max_decodes)
        self.batching = batching
        self.batcher = Batcher(self.probabilities, self.lock, batching.max_images, batching.max_delay)

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities of uint8 images N x 3 x 32 x 32 at the server's TTA level."""
        loaded, chunk = self.loaded, self.batching.chunk
        logits = []
        for start in range(0, len(images), chunk):
            part = images[start : start + chunk]
            padded = torch.cat([part, part.new_zeros((chunk - len(part), *part.shape[1:]))])
            options = {"tta": self.tta, "runtime": loaded.runtime, "normalization": loaded.normalization}
            logits.append(predict_logits(loaded.model, padded, batch_size=chunk, **options)[: len(part)])
        return (torch.cat(logits) / loaded.temperature).softmax(dim=1)

    def decode(self, uploads: list[tuple[str, bytes]]) -> tuple[list[dict], torch.Tensor | None, list[int]]:
        """(one entry per upload, in order, with the reason where it could not be read; the readable images as a
        batch, or None; their positions among the entries)."""
        entries, images, readable = [], [], []
        for name, data in uploads:
            try:
                with self.decoding:
                    images.append(decode_image(data, name, self.limits.max_image_pixels))
                readable.append(len(entries))
                entries.append({"file": name, "top": None, "error": None})
            except ImageError as error:
                entries.append({"file": name, "top": None, "error": str(error).removeprefix(f"{name}: ")})
        return entries, torch.stack(images) if images else None, readable

    def explain_into(self, entries: list[dict], batch: torch.Tensor, readable: list[int], top_k: int) -> None:
        """Fill the readable entries' top-k, 32x32 view and class-activation map (one request at a time)."""
        with self.lock:
            explanation = explain_loaded(self.loaded, batch, tta=self.tta, layer=self.cam_layer, top=1)
        for position, index in enumerate(readable):
            entries[index]["top"] = _top(explanation.probabilities[position], top_k)
            entries[index].update(self._pictures(batch[position], explanation.maps[position, 0]))
            entries[index]["cam_class"] = CLASSES[int(explanation.classes[position, 0])]

    def answer(self, uploads: list[tuple[str, bytes]], with_pictures: bool, top_k: int = 5) -> list[dict]:
        """One entry per upload, in order: {"file", "top", "error"} as `predict --json` (and pictures if asked);
        blocking, for callers outside the server's event loop."""
        entries, batch, readable = self.decode(uploads)
        if batch is not None and with_pictures:
            self.explain_into(entries, batch, readable, top_k)
        elif batch is not None:
            fill_top(entries, readable, self.batcher.submit(batch).result(), top_k)
        return entries

    @staticmethod
    def _pictures(image: torch.Tensor, cam: torch.Tensor) -> dict:
        from resnet_cifar.viz.cam_pictures import overlay, png_bytes
        from resnet_cifar.viz.pictures import upsample

        def url(pixels) -> str:
            return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode()

        return {"view": url(upsample(image, 128)), "cam": url(overlay(image, cam, 128))}


def fill_top(entries: list[dict], readable: list[int], probabilities: torch.Tensor, top_k: int) -> None:
    for position, index in enumerate(readable):
        entries[index]["top"] = _top(probabilities[position], top_k)


def _top(probabilities: torch.Tensor, k: int) -> list[dict]:
    values, indices = probabilities.topk(k)
    return [
        {"class": CLASSES[i], "probability": round(float(p), 6)}
        for p, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def declared_size(request: Request, limits: Limits) -> int:
    """The body's Content-Length, or UploadError when it is missing or over the request limit."""
    length = request.headers.get("content-length")
    if length is None or not (length.isascii() and length.isdigit()) or len(length) > 15:
        raise UploadError(411, "send the images as multipart/form-data with a Content-Length")
    if int(length) > limits.request_bytes:
        raise UploadError(413, f"the upload is {int(length) / MB:.1f} MB; at most {limits.request_bytes / MB:.0f} MB")
    return int(length)


class BodyBudget:
    """The bytes of request bodies held at once, all requests together, counted as they arrive (never reserved from
    what a client declares: two idle sockets announcing 128 MB hold nothing). The event loop is one thread."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    def take(self, count: int) -> None:
        if self.held + count > self.limit:
            raise UploadError(503, "the server is busy with other uploads; try again in a moment")
        self.held += count

    def give_back(self, count: int) -> None:
        self.held -= count


async def receive_body(request: Request, declared: int, budget: BodyBudget, limits: Limits) -> bytearray:
    """The request body, read as it arrives, within the budget and in time: a client that sends nothing for
    `limits.idle_seconds`, or has not finished after `limits.body_seconds`, is answered 408 and its bytes freed."""
    loop = asyncio.get_running_loop()
    deadline, body = loop.time() + limits.body_seconds, bytearray()
    chunks = request.stream().__aiter__()
    try:
        while True:
            wait = min(limits.idle_seconds, deadline - loop.time())
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), max(wait, 0.001))
            except StopAsyncIteration:
                return body
            except asyncio.TimeoutError:
                raise UploadError(408, "the upload stalled or took too long; send it again") from None
            except ClientDisconnect:  # the client gave up mid-body: nobody is left to answer
                raise UploadError(400, "the client disconnected before the upload ended") from None
            if len(body) + len(chunk) > declared:
                raise UploadError(400, "the body is longer than its Content-Length")
            budget.take(len(chunk))
            body += chunk
    except BaseException:
        budget.give_back(len(body))
        raise


async def parse_uploads(request: Request, body: bytearray, limits: Limits) -> list[tuple[str, bytes]]:
    """The uploaded files (name, bytes) of a received multipart body, or UploadError saying what was wrong."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UploadError(415, "send the images as multipart/form-data (a form with file fields)")

    async def once():
        yield bytes(body)

    parser = in_memory_parser(limits)(request.headers, once(), max_files=limits.max_files, max_fields=16)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        too_many = "Too many files" in error.message
        message = f"too many files: at most {limits.max_files} per request" if too_many else error.message
        raise UploadError(413 if too_many else 400, message) from None
    files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
    if not files:
        raise UploadError(400, "no image in the upload: send one or more files")
    uploads = []
    for upload in files:
        data, name = await upload.read(), upload.filename or "upload"
        if len(data) > limits.max_file_bytes:
            size, most = len(data) / MB, limits.max_file_bytes / MB
            raise UploadError(413, f"{name} is {size:.1f} MB; each image may be at most {most:.0f} MB")
        uploads.append((name, data))
    await form.close()
    return uploads


def create_app(classifier: Classifier) -> FastAPI:
    app = FastAPI(title="resnet-cifar", docs_url=None, redoc_url=None, openapi_url=None)
    page = resources.files("resnet_cifar.serve").joinpath("page.html").read_text(encoding="utf-8")
    limits = classifier.limits
    budget = BodyBudget(max(limits.max_bytes_in_flight, limits.request_bytes))  # any one allowed upload fits

    @app.exception_handler(UploadError)
    async def refused(request: Request, error: UploadError) -> JSONResponse:
        headers = {"Retry-After": "1"} if error.status == 503 else None
        return JSONResponse({"error": str(error)}, status_code=error.status, headers=headers)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/health")
    async def health() -> dict:  # on the event loop itself: answers while every worker thread computes
        return health_of(classifier)

    @app.post("/api/predict")
    async def predict(request: Request) -> JSONResponse:
        return await answer(request, classifier, budget, with_pictures=False)

    @app.post("/api/explain")
    async def explain_images(request: Request) -> JSONResponse:
        return await answer(request, classifier, budget, with_pictures=True)

    return app


async def answer(request: Request, classifier: Classifier, budget: BodyBudget, with_pictures: bool) -> JSONResponse:
    """One request: its body within the budget, decoded (its bytes freed at once), then predicted or explained."""
    top_k = parse_top_k(request.query_params.get("top_k", "5"))
    declared = declared_size(request, classifier.limits)
    body = await receive_body(request, declared, budget, classifier.limits)
    received = len(body)
    try:
        uploads = await parse_uploads(request, body, classifier.limits)
        del body
        entries, batch, readable = await _in_thread(classifier.decode, uploads)
        del uploads  # the bytes are decoded: free them before waiting for the model
    finally:
        budget.give_back(received)
        return_freed_memory()  # what decoding took goes back to the system (microseconds when there is nothing)
    if batch is not None and with_pictures:
        await _in_thread(classifier.explain_into, entries, batch, readable, top_k)
    elif batch is not None:
        fill_top(entries, readable, await asyncio.wrap_future(classifier.batcher.submit(batch)), top_k)
    if all(entry["error"] for entry in entries):
        reasons = "; ".join(f"{e['file']}: {e['error']}" for e in entries)
        return JSONResponse({"error": f"no readable image ({reasons})", "results": entries}, status_code=422)
    return JSONResponse(entries)


def health_of(classifier: Classifier) -> dict:
    """What `GET /api/health` answers: the weights, where and how they run, the limits and the batching so far."""
    loaded, limits = classifier.loaded, classifier.limits
    return {
        "status": "ok", "weights": str(loaded.path), "model": loaded.name, "device": str(loaded.runtime.device),
        "precision": loaded.runtime.precision, "tta": classifier.tta, "temperature": loaded.temperature,
        "normalization": loaded.normalization.as_dict(), "classes": list(CLASSES),
        "limits": {**asdict(limits), "request_bytes": limits.request_bytes},
        "batching": {**asdict(classifier.batching), "forward_passes": classifier.batcher.batches},
    }


def parse_top_k(text: str) -> int:
    """`?top_k=`: a whole number of classes, 1 to 10; else a 400 in one sentence (never a traceback)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 2) or not 1 <= int(text) <= len(CLASSES):
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise UploadError(400, f"top_k must be a whole number from 1 to {len(CLASSES)}, got {shown!r}")
    return int(text)


async def _in_thread(function, *args):
    """Run the model's work off the event loop, so the server answers health checks while it computes."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)
