"""`resnet-cifar serve`: the local web page and JSON API."""

from __future__ import annotations

import argparse

from resnet_cifar.cli.options import add_runtime, add_weights, load_weights, positive_int


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from resnet_cifar.inference.cam import default_layer, find_layer
    from resnet_cifar.serve.app import MB, Classifier, Limits, create_app

    loaded = load_weights(args, bf16=args.bf16)
    find_layer(loaded.model, args.cam_layer or default_layer(loaded.model))  # a wrong layer fails now, not per image
    limits = Limits(max_files=args.max_files, max_file_bytes=int(args.max_file_mb * MB))
    app = create_app(Classifier(loaded, tta=args.tta, cam_layer=args.cam_layer), limits)
    print(
        f"serving {loaded.name} ({loaded.path}; {loaded.runtime.describe()}) at http://{args.host}:{args.port}/ "
        "(Ctrl-C stops)",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


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
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--tta", type=int, choices=(0, 1, 2), default=1, help="test-time augmentation level")
    parser.add_argument("--cam-layer", default=None, metavar="NAME", help="layer of the maps (default: last stage)")
    parser.add_argument("--max-files", type=positive_int, default=16, help="images per request (default 16)")
    parser.add_argument("--max-file-mb", type=_megabytes, default=10.0, help="size limit per image (default 10)")
    add_runtime(parser)
    parser.set_defaults(func=cmd_serve)
