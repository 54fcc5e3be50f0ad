"""`resnet-cifar experiment ...`: the measurements of why residual connections work. Each experiment's flags are
generated from its settings dataclass (experiments/settings.py): each setting declared, documented and defaulted
once."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from resnet_cifar.cli.options import yaml_mapping
from resnet_cifar.experiments.settings import (
    DataEfficiencySettings,
    DegradationSettings,
    DepthSettings,
    GradientFlowSettings,
)
from resnet_cifar.run_folder import OUTPUT_DIR


def add_settings_flags(parser: argparse.ArgumentParser, settings_class: type) -> None:
    """One flag per field of `settings_class` that carries help text (tuples take several values)."""
    hints = typing.get_type_hints(settings_class)
    for spec in dataclasses.fields(settings_class):
        if not spec.metadata.get("flag"):
            continue
        flag, kind = "--" + spec.name.replace("_", "-"), hints[spec.name]
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        text = spec.metadata["help"]
        if default is not None and "default" not in text:
            text += f" (default: {default})"
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            metavar = "N" if item is int else "V"
            parser.add_argument(flag, type=item, nargs="+", default=None, metavar=metavar, help=text)
        elif kind is dict:
            parser.add_argument(flag, type=yaml_mapping, default=None, metavar="YAML", help=text)
        else:
            item = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
            parser.add_argument(flag, type=item, default=None, metavar="V", help=text)


def settings_from(args: argparse.Namespace, settings_class: type):
    """The settings of this command line: the class defaults (or its quick() version), then the flags given."""
    given = {}
    for spec in dataclasses.fields(settings_class):
        value = getattr(args, spec.name, None)
        if spec.metadata.get("flag") and value is not None:
            given[spec.name] = tuple(value) if isinstance(value, list) else value
    settings = settings_class.quick(**given) if args.quick else settings_class(**given)
    settings.validate()
    if settings.threads:
        import torch

        from resnet_cifar.runtime import check_threads

        torch.set_num_threads(check_threads(settings.threads))
    return settings


def cmd_gradient_flow(args: argparse.Namespace) -> int:
    from resnet_cifar.experiments.gradient_flow import run_gradient_flow, summary_lines, write_gradient_flow

    settings = settings_from(args, GradientFlowSettings)
    results = run_gradient_flow(settings)
    print("\n".join(summary_lines(results)))
    for path in write_gradient_flow(results, Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_degradation(args: argparse.Namespace) -> int:
    from resnet_cifar.config import load_config
    from resnet_cifar.experiments.degradation import run_degradation, table_lines, write_degradation
    from resnet_cifar.experiments.subruns import experiment_runtime

    settings = settings_from(args, DegradationSettings)
    if args.schedule == "step":
        settings.use_paper_step_schedule()
    runtime = experiment_runtime(load_config(None, settings.recipe), settings.threads)
    results = run_degradation(settings, Path(args.out), runtime)
    print("\n".join(table_lines(results)))
    print(f"total {results['total_seconds'] / 60:.1f} minutes")
    for path in write_degradation(results, Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_data_efficiency(args: argparse.Namespace) -> int:
    from resnet_cifar.config import load_config
    from resnet_cifar.experiments.data_efficiency import run_data_efficiency, table_lines, write_data_efficiency
    from resnet_cifar.experiments.subruns import experiment_runtime

    settings = settings_from(args, DataEfficiencySettings)
    if args.model is not None and args.model_options is None:
        settings.model_options = {}  # the default options are fastnet's
    out = Path(args.out)
    runtime = experiment_runtime(load_config(None, {**settings.recipe, "device": settings.device}), settings.threads)
    results = run_data_efficiency(settings, out, runtime, train=not args.report_only)
    print("\n".join(table_lines(results)))
    print(f"{results['seconds'] / 60:.1f} minutes of training and testing in all ({results['budget']})")
    for path in write_data_efficiency(results, out):
        print(f"wrote {path}")
    return 0


def cmd_depth(args: argparse.Namespace) -> int:
    from resnet_cifar.config import load_config
    from resnet_cifar.experiments.depth import run_depth, summary_lines, write_depth
    from resnet_cifar.experiments.study_reports import ReportError
    from resnet_cifar.experiments.subruns import experiment_runtime

    settings = settings_from(args, DepthSettings)
    settings.validate()
    out = Path(args.out)
    runtime = experiment_runtime(load_config(settings.config), settings.threads)
    results = run_depth(settings, out, runtime, train=not args.report_only)
    if results["nets"]:
        print("\n".join(summary_lines(results)))
        try:
            written = write_depth(results, out)
        except ReportError as refusal:
            if args.report_only:
                raise
            # some nets of a study run into its folder: they are finished and kept, the fuller report stays
            print(f"{refusal}\nthe nets of this run are finished and kept: the same command without its choice of nets "
                  "and with --report-only redraws the whole study")
            return 0
        for path in written:
            print(f"wrote {path}")
    if results["missing"]:
        print(f"not finished: {', '.join(results['missing'])}")
    return 0


EXPERIMENTS = {  # name: (settings, command, what it measures, what --quick runs)
    "gradient-flow": (GradientFlowSettings, cmd_gradient_flow, "per-layer gradient norms, plain vs residual, +/- batch "
                      "norm", "depths 20 and 56, 25 steps drawn from 1,000 images: 8 nets"),
    "degradation": (DegradationSettings, cmd_degradation, "plain vs residual 20/32/44/56, same recipe and budget",
                    "2 epochs of 5,000 images, 2,000 test images"),
    "data-efficiency": (DataEfficiencySettings, cmd_data_efficiency, "test accuracy vs training-set size, residual vs "
                        "plain twin, same step budget", "4 sizes, 1 seed, 150 steps"),
    "depth": (DepthSettings, cmd_depth, "Table 6 and Fig. 6 at the paper's scale: plain-20..56 and ResNet-20..110, "
              "whole runs of one recipe", "plain-20 and ResNet-20/32, 1 epoch of 2,000 images, 1,000 test images"),
}


def _experiment_parser(sub) -> None:
    parser = sub.add_parser("experiment", help="measure why residual connections work")
    experiments = parser.add_subparsers(dest="experiment", required=True)
    commands = {}
    for name, (settings_class, func, help_text, quick_text) in EXPERIMENTS.items():
        command = experiments.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--out", default=f"{OUTPUT_DIR}/{name}", help="folder for the results (JSON, plots)")
        command.add_argument("--quick", action="store_true", help=quick_text)
        add_settings_flags(command, settings_class)
        command.set_defaults(func=func)
        commands[name] = command
    commands["degradation"].add_argument(
        "--schedule", choices=("onecycle", "step"), default="onecycle",
        help="onecycle (default: warm-up to lr 0.1, then down) or step (the paper's, compressed; lr 0.1 at once)",
    )
    for name in ("data-efficiency", "depth"):
        commands[name].add_argument(
            "--report-only", action="store_true", help="summarise what is finished in --out (train nothing)"
        )


def register(sub) -> None:
    """Add this module's subcommands to the `resnet-cifar` parser."""
    _experiment_parser(sub)
