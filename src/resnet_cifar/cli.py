"""The `resnet-cifar` command: one entry point, one subcommand per job.

Heavy modules are imported inside each command, so `resnet-cifar --help` answers at once. Every error the user can
cause is a ResnetCifarError and is printed as one line (exit code 2), never as a stack trace.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from resnet_cifar import __version__
from resnet_cifar.errors import ResnetCifarError

EXIT_USAGE = 2


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", default=None, help="CIFAR-10 folder or archive (default: $RESNET_CIFAR_DATA, then ./data)"
    )
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading missing data")


# --- models ------------------------------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from resnet_cifar.models import format_table, list_models, model_table

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}", file=sys.stderr)
        return 1
    print(format_table(model_table(names)))
    return 0


def _models_parser(sub) -> None:
    parser = sub.add_parser("models", help="list the registered models with parameters and FLOPs")
    parser.add_argument("pattern", nargs="?", default=None, help="glob filter, e.g. 'plain*'")
    parser.set_defaults(func=cmd_models)


# --- data --------------------------------------------------------------------------------------------------------


def cmd_data_verify(args: argparse.Namespace) -> int:
    from resnet_cifar.data.locate import find_dataset
    from resnet_cifar.data.verify import verify_report

    ok, report = verify_report(find_dataset(args.data_dir, download=not args.no_download))
    print(report)
    return 0 if ok else 1


def _data_parser(sub) -> None:
    parser = sub.add_parser("data", help="dataset tools")
    data_sub = parser.add_subparsers(dest="data_command", required=True)
    verify = data_sub.add_parser("verify", help="check every file's checksum and print per-class counts")
    _add_data_dir(verify)
    verify.set_defaults(func=cmd_data_verify)


# --- entry point -------------------------------------------------------------------------------------------------

SUBCOMMANDS: list[Callable] = [_models_parser, _data_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnet-cifar", description="Residual Networks on CIFAR-10: train, evaluate, show, measure."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ResnetCifarError as error:
        print(f"resnet-cifar: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("resnet-cifar: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
