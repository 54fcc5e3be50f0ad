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


# --- train -------------------------------------------------------------------------------------------------------


def _config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (`--batch-size 256`, `--bf16/--no-bf16`); values parse like YAML."""
    from resnet_cifar.train.config import FIELDS

    group = parser.add_argument_group("configuration (override the YAML file)")
    for name, spec in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        help_text = spec.metadata["help"]
        if spec.metadata.get("choices"):
            help_text += f" ({'/'.join(map(str, spec.metadata['choices']))})"
        if spec.type in ("bool", bool):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=name, default=None, metavar="V", help=help_text)


def _overrides(args: argparse.Namespace) -> dict:
    from resnet_cifar.train.config import FIELDS, parse_cli_value

    overrides = {}
    for name in FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value if isinstance(value, bool) else parse_cli_value(value)
    if "name" in overrides and overrides["name"] is not None:
        overrides["name"] = str(overrides["name"])
    return overrides


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from resnet_cifar.train.config import load_config
    from resnet_cifar.train.loop import Interrupted
    from resnet_cifar.train.runner import exit_code_for, print_final_line, resume_config, run_training

    overrides = _overrides(args)
    if args.resume:
        config = resume_config(Path(args.resume), overrides)
    else:
        config = load_config(args.config, overrides)
    try:
        results = run_training(config, resume=Path(args.resume) if args.resume else None, overwrite=args.overwrite)
    except Interrupted as stop:
        return exit_code_for(stop)
    print_final_line(results)
    return 0


def _train_parser(sub) -> None:
    parser = sub.add_parser(
        "train",
        help="train a model (config file < flags); prints test_accuracy= last",
        description="Train on CIFAR-10. Defaults < --config YAML < flags. The resolved config, metrics.csv, "
        "checkpoints and pictures go to OUTPUT_DIR/NAME.",
    )
    parser.add_argument("--config", default=None, help="YAML file of config keys (see configs/)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run exactly where it stopped")
    parser.add_argument("--overwrite", action="store_true", help="reuse the run folder name instead of adding -2")
    _config_flags(parser)
    parser.set_defaults(func=cmd_train)


# --- evaluate and plot -------------------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    from resnet_cifar.evaluate.report import format_results
    from resnet_cifar.evaluate.runner import evaluate_source

    results = evaluate_source(
        args.source,
        which=args.weights,
        tta=args.tta,
        data_dir=args.data_dir,
        download=not args.no_download,
        model_name=args.model,
        batch_size=args.batch_size,
        bf16=args.bf16,
    )
    print(format_results(results))
    print(f"results written to {results['path']}")
    print(f"test_accuracy={results['top1']:.4f}")
    return 0


def _evaluate_parser(sub) -> None:
    parser = sub.add_parser("evaluate", help="test-set accuracy, per-class accuracy and confusion matrix of a run")
    parser.add_argument("source", help="run folder or .safetensors weights file")
    parser.add_argument("--weights", default="last", choices=("last", "best"), help="which checkpoint of a run")
    parser.add_argument(
        "--tta",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="test-time augmentation: 0 none, 1 flip, 2 flip + translate (default: the run's)",
    )
    parser.add_argument("--model", default=None, help="model name, for weights files without metadata")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast (default: as the run was trained)",
    )
    _add_data_dir(parser)
    parser.set_defaults(func=cmd_evaluate)


def cmd_plot(args: argparse.Namespace) -> int:
    from resnet_cifar.evaluate.runner import plot_run

    for path in plot_run(args.run, data_dir=args.data_dir, download=not args.no_download):
        print(f"wrote {path}")
    return 0


def _plot_parser(sub) -> None:
    parser = sub.add_parser("plot", help="(re)write inference.png, curves.png and confusion_matrix.png of a run")
    parser.add_argument("run", help="run folder")
    _add_data_dir(parser)
    parser.set_defaults(func=cmd_plot)


# --- entry point -------------------------------------------------------------------------------------------------

SUBCOMMANDS: list[Callable] = [_train_parser, _evaluate_parser, _plot_parser, _models_parser, _data_parser]


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
