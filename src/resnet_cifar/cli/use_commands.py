"""`resnet-cifar predict`, `export` and `import`: use a trained model, or bring one trained elsewhere."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_cifar.cli.options import add_explain, add_runtime, add_tta, add_weights, load_weights, top_k


def cmd_predict(args: argparse.Namespace) -> int:
    from resnet_cifar.inference.classify import expand_inputs, format_json, format_table, predict_files

    entries = expand_inputs(args.images)  # an empty name is refused here, before anything is loaded
    explain_to = explain_target(args.explain, entries, args.force) if args.explain else None
    loaded = load_weights(args, precision=args.precision)
    if explain_to is not None:
        from resnet_cifar.inference.explain import default_layer, find_layer

        find_layer(loaded.model, args.cam_layer or default_layer(loaded.model))  # a wrong layer fails now
    predictions = predict_files(
        loaded.model, entries, top_k=args.top_k, tta=args.tta, runtime=loaded.runtime, temperature=loaded.temperature,
        normalization=loaded.normalization,
    )
    print(format_json(predictions) if args.json else format_table(predictions, args.top_k))
    readable = [p.path for p in predictions if p.top]
    if explain_to is not None and readable:
        picture = explain_files(loaded, readable, explain_to, args.tta, args.cam_layer)
        print(f"wrote {picture}", file=sys.stderr)
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"{len(failed)} of {len(predictions)} inputs failed", file=sys.stderr)
    return 1 if failed or not predictions else 0


def explain_target(text: str, entries: list, force: bool):
    """The --explain picture: a .png file that is none of the images being predicted, replaced only with --force,
    never a folder, a device or a pipe."""
    from resnet_cifar.errors import OutputError
    from resnet_cifar.files import check_output

    path = Path(text)
    if path.suffix.lower() != ".png":
        raise OutputError(f"--explain {text}: name the .png file to draw the maps into (e.g. explain.png)")
    return check_output(path, force, inputs=[entry for entry in entries if isinstance(entry, Path)])


def explain_files(loaded, paths: list[str], output, tta: int, layer: str | None):
    """predict --explain: the class-activation maps of the readable image files `paths`, drawn into `output`."""
    import torch

    from resnet_cifar.inference.explain import explain_loaded
    from resnet_cifar.inference.images import load_image
    from resnet_cifar.viz.cam_pictures import write_explanations

    images = torch.stack([load_image(path) for path in paths])
    return write_explanations(images, explain_loaded(loaded, images, tta=tta, layer=layer), paths, Path(output))


def _predict_parser(sub) -> None:
    parser = sub.add_parser("predict", help="classify image files (PNG, JPEG, WebP, BMP, GIF), folders or globs")
    parser.add_argument("images", nargs="+", help="files, folders (searched recursively) or glob patterns")
    add_weights(parser, "(default: the shipped weights, offline)")
    parser.add_argument("--top-k", type=top_k, default=3, help="classes shown per image, 1 to 10 (default 3)")
    add_tta(parser, 1, "default 1")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_explain(
        parser, "--explain", metavar="OUT.png", help="also draw each image's class-activation maps into OUT.png"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --explain picture")
    add_runtime(parser)
    parser.set_defaults(func=cmd_predict)


def cmd_export(args: argparse.Namespace) -> int:

    from resnet_cifar.inference.export import export_metadata, export_model, output_path
    from resnet_cifar.run_folder import refuse_overwrite

    loaded = load_weights(args, precision="fp32")  # the exported graph is fp32
    output = output_path(args.output, loaded.name, args.format)
    refuse_overwrite(output, args.force, inputs=[loaded.path])
    export_model(
        loaded.model, args.format, output, opset=args.opset,
        metadata=export_metadata(loaded.temperature, loaded.normalization), normalization=loaded.normalization,
    )
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
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    parser.add_argument(
        "--device", default="cpu", help="where to trace the model (default cpu: a file that runs anywhere; or auto)"
    )
    parser.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    from resnet_cifar.data.normalization import Normalization
    from resnet_cifar.errors import ConfigError
    from resnet_cifar.inference.importer import import_checkpoint
    from resnet_cifar.run_folder import OUTPUT_DIR

    if (args.mean is None) != (args.std is None):
        raise ConfigError("--mean and --std go together: give both (3 numbers each, pixels in [0, 1])")
    normalization = None if args.mean is None else Normalization(tuple(args.mean), tuple(args.std))
    source = Path(args.source)
    output = Path(args.output) if args.output else Path(OUTPUT_DIR) / "imported" / f"{source.stem}.safetensors"
    done = import_checkpoint(
        source, output, model_name=args.model, shortcut_padding=args.shortcut_padding, normalization=normalization,
        overwrite=args.force,
    )
    options = ", ".join(f"{k}={v}" for k, v in done.options.items())
    print(f"read {source} ({done.layout} layout, {done.tensors} tensors): {done.model} ({options})")
    print(f"normalization: {done.normalization.describe()} ({done.normalization_source})")
    if done.reported:
        print(f"the file reports: {done.reported}")
    print(f"wrote {done.path}; try: resnet-cifar evaluate {done.path}")
    return 0


def _import_parser(sub) -> None:
    from resnet_cifar.choices import SHORTCUT_PADDINGS

    parser = sub.add_parser(
        "import",
        help="convert a published CIFAR ResNet checkpoint (akamaster .th, kuangliu/torchvision-style state dicts) "
        "to our weights",
    )
    parser.add_argument("source", help="a torch.save file (read with weights_only=True: nothing is unpickled)")
    parser.add_argument(
        "--output", default=None, help="the .safetensors file to write (default outputs/imported/<name>.safetensors)"
    )
    parser.add_argument("--model", default=None, help="the model name (default: told from the tensors)")
    parser.add_argument(
        "--shortcut-padding", choices=SHORTCUT_PADDINGS, default=None,
        help="where option A's zero channels go (default: split for akamaster's layout, else after)",
    )
    parser.add_argument("--mean", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="input mean")
    parser.add_argument("--std", type=float, nargs=3, default=None, metavar=("R", "G", "B"), help="input std")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.set_defaults(func=cmd_import)


def register(sub) -> None:
    """Add this module's subcommands to the `resnet-cifar` parser."""
    _predict_parser(sub)
    _export_parser(sub)
    _import_parser(sub)
