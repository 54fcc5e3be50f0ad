"""`resnet-cifar predict` and `resnet-cifar export`: use a trained model."""

from __future__ import annotations

import argparse
import sys

from resnet_cifar.cli.options import add_runtime, add_weights, load_weights, top_k


def cmd_predict(args: argparse.Namespace) -> int:
    from resnet_cifar.inference.predict import format_json, format_table, predict_files

    loaded = load_weights(args, bf16=args.bf16)
    predictions = predict_files(
        loaded.model,
        args.images,
        top_k=args.top_k,
        tta=args.tta,
        runtime=loaded.runtime,
        temperature=loaded.temperature,
    )
    print(format_json(predictions) if args.json else format_table(predictions, args.top_k))
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"{len(failed)} of {len(predictions)} inputs failed", file=sys.stderr)
    return 1 if failed or not predictions else 0


def _predict_parser(sub) -> None:
    parser = sub.add_parser("predict", help="classify image files (PNG, JPEG, WebP, BMP, GIF), folders or globs")
    parser.add_argument("images", nargs="+", help="files, folders (searched recursively) or glob patterns")
    add_weights(parser, "(default: the shipped weights, offline)")
    parser.add_argument("--top-k", type=top_k, default=3, help="classes shown per image, 1 to 10 (default 3)")
    parser.add_argument("--tta", type=int, choices=(0, 1, 2), default=1, help="test-time augmentation level")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_runtime(parser)
    parser.set_defaults(func=cmd_predict)


def cmd_export(args: argparse.Namespace) -> int:

    from resnet_cifar.inference.export import export_metadata, export_model, output_path

    loaded = load_weights(args, bf16=False)  # the exported graph is fp32
    output = output_path(args.output, loaded.name, args.format)
    export_model(loaded.model, args.format, output, opset=args.opset, metadata=export_metadata(loaded.temperature))
    print(
        f"exported {loaded.name} ({loaded.path}) to {output}: input float32 N x 3 x 32 x 32 in [0, 1], "
        "output logits N x 10"
    )
    return 0


def _export_parser(sub) -> None:
    parser = sub.add_parser("export", help="export to ONNX or TorchScript (dynamic batch, normalisation inside)")
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    add_weights(parser, "(default: the shipped weights)")
    parser.add_argument("--output", default=None, help="output file or folder (default: outputs/<model>.onnx or .pt)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    parser.add_argument(
        "--device", default="cpu", help="where to trace the model (default cpu: a file that runs anywhere; or auto)"
    )
    parser.set_defaults(func=cmd_export)


def register(sub) -> None:
    """Add this module's subcommands to the `resnet-cifar` parser."""
    _predict_parser(sub)
    _export_parser(sub)
