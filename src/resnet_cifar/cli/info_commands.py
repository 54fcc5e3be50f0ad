"""`resnet-cifar models` and `resnet-cifar data verify`."""

from __future__ import annotations

import argparse
import sys

from resnet_cifar.cli.options import add_data_dir

# --- models ------------------------------------------------------------------------------------------------------


def shipped_lines() -> list[str]:
    """The weights inside the package, by the name `--weights` and `load_pretrained` take, from their model cards."""
    import json

    from resnet_cifar.inference.loading import WEIGHTS_DIR, shipped_weights

    lines = ["| name | model | parameters | test accuracy (flip TTA) | storage |", "| --- | --- | ---: | ---: | --- |"]
    for name in shipped_weights():
        card = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
        accuracy = card["test_accuracy"]["tta_flip"]
        lines.append(
            f"| {name} | {card['model']} | {card['parameters']:,} | {accuracy:.2%} | {card.get('storage', 'float32')} |"
        )
    return lines


def cmd_models(args: argparse.Namespace) -> int:
    from resnet_cifar.models import format_table, list_models
    from resnet_cifar.models.summary import cached_model_table

    if args.shipped:
        print("\n".join(shipped_lines()))
        return 0
    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    print(format_table(cached_model_table(names)))
    return 0


def _models_parser(sub) -> None:
    parser = sub.add_parser("models", help="list the registered models with parameters and FLOPs")
    parser.add_argument("pattern", nargs="?", default=None, help="glob filter, e.g. 'plain*'")
    parser.add_argument("--shipped", action="store_true", help="list the weights shipped by name (--weights NAME)")
    parser.set_defaults(func=cmd_models)


# --- data --------------------------------------------------------------------------------------------------------


def cmd_data_verify(args: argparse.Namespace) -> int:
    from resnet_cifar.data.locate import find_dataset
    from resnet_cifar.data.verify import verify_report

    ok, report = verify_report(find_dataset(args.data_dir, download=False))  # a check reports; it never downloads
    print(report)
    return 0 if ok else 1


def _data_parser(sub) -> None:
    parser = sub.add_parser("data", help="dataset tools")
    data_sub = parser.add_subparsers(dest="data_command", required=True)
    verify = data_sub.add_parser("verify", help="check every file's checksum and print per-class counts")
    add_data_dir(verify, download=False)
    verify.set_defaults(func=cmd_data_verify)


def register(sub) -> None:
    """Add this module's subcommands to the `resnet-cifar` parser."""
    _models_parser(sub)
    _data_parser(sub)
