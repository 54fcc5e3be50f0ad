"""`resnet-cifar serve`: the local web page and JSON API."""

from __future__ import annotations

import argparse
import math
import sys

from resnet_cifar.cli.options import add_runtime, add_tta, add_weights, load_weights, positive_int


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from resnet_cifar.inference.explain import default_layer, find_layer
    from resnet_cifar.interrupts import interrupted
    from resnet_cifar.serve.app import MB, Batching, Classifier, Limits, create_app

    listening = bind_socket(args.host, args.port)  # a port in use or not allowed fails now, in one line
    loaded = load_weights(args, precision=args.precision)
    find_layer(loaded.model, args.cam_layer or default_layer(loaded.model))  # a wrong layer fails now, not per image
    limits = Limits(
        max_files=args.max_files, max_file_bytes=int(args.max_file_mb * MB),
        max_image_pixels=int(args.max_image_mp * 1e6),
    )
    batching = Batching(max_images=args.max_batch, max_delay=args.batch_delay_ms / 1000)
    app = create_app(Classifier(loaded, tta=args.tta, cam_layer=args.cam_layer, limits=limits, batching=batching))
    host, port = listening.getsockname()[:2]  # the port the system gave for --port 0
    print(f"serving {loaded.name} ({loaded.path}; {loaded.runtime.describe()}) at {url_of(host, port)} (Ctrl-C stops)",
          flush=True)  # fmt: skip
    if not is_loopback(host):
        print(f"resnet-cifar: warning: listening on {host}: any machine that reaches this one can use the API "
              "(--host 127.0.0.1 keeps it to this machine)", file=sys.stderr, flush=True)  # fmt: skip
    if interrupted():  # Ctrl-C while the modules loaded, swallowed by one of them: stop as asked
        raise KeyboardInterrupt
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[listening])
    return 0


def is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def bind_socket(host: str, port: int):
    """A listening socket at host:port, or ConfigError in one line (in use, not allowed, no such address)."""
    import socket

    from resnet_cifar.errors import ConfigError

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as error:
        raise ConfigError(f"cannot listen at {host}:{port}: {error.strerror or error}") from None
    listening.set_inheritable(True)
    return listening


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text!r}")
    return int(text)


def _number_in(low: float, high: float, meaning: str, low_allowed: bool = True):
    """An argparse type: a float from `low` to `high` (`low` itself only when `low_allowed`), else one line."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high and (low_allowed or value > low)):
            raise argparse.ArgumentTypeError(f"must be {meaning}, got {text!r}")
        return value

    return parse


_megapixels = _number_in(0, 179, "more than 0 and at most 179 (megapixels)", low_allowed=False)
_milliseconds = _number_in(0, 1000, "from 0 to 1000 (milliseconds)")


def _megabytes(text: str) -> float:
    value = float(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 100 (MB), got {text}")
    return value


def register(sub) -> None:
    """Add `serve` to the `resnet-cifar` parser."""
    parser = sub.add_parser("serve", help="a local web page (and JSON API) to try the model on your own images")
    add_weights(parser, "(default: the shipped weights)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    add_tta(parser, 1, "default 1")
    parser.add_argument("--cam-layer", default=None, metavar="NAME", help="layer of the maps (default: last stage)")
    parser.add_argument("--max-files", type=positive_int, default=16, help="images per request (default 16)")
    parser.add_argument("--max-file-mb", type=_megabytes, default=10.0, help="size limit per image (default 10)")
    parser.add_argument(
        "--max-image-mp", type=_megapixels, default=40.0, help="megapixels an image may have (default 40, at most 179)"
    )
    parser.add_argument(
        "--max-batch", type=positive_int, default=64,
        help="images of concurrent requests classified in one forward pass (default 64; 1: batching off)",
    )
    parser.add_argument(
        "--batch-delay-ms", type=_milliseconds, default=5.0,
        help="how long a forward pass waits for more requests to join it (default 5)",
    )
    add_runtime(parser)
    parser.set_defaults(func=cmd_serve, returns_memory=True)
