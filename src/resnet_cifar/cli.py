"""The `resnet-cifar` command: one entry point, one subcommand per job.

Heavy modules are imported inside each command, so `resnet-cifar --help` answers at once. Every error the user can
cause is a ResnetCifarError and is printed as one line (exit code 2), never as a stack trace.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from resnet_cifar import __version__
from resnet_cifar.errors import Interrupted, ResnetCifarError

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean for unknown flags (`--learning-rate` -> `--lr`), for every subcommand."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments:"):
            hints = [hint for word in message.split(":", 1)[1].split() if (hint := self._suggest(word))]
            if hints:
                message += "; did you mean " + ", ".join(hints) + "?"
        super().error(message)

    def _suggest(self, word: str) -> str | None:
        if not word.startswith("--"):
            return None
        import difflib

        from resnet_cifar.train.config import ALIASES

        flag = word.split("=", 1)[0]
        alias = ALIASES.get(flag[2:].replace("-", "_"))
        if alias:
            return "--" + alias.replace("_", "-")
        close = difflib.get_close_matches(flag, sorted(self._all_flags()), n=1)
        return close[0] if close else None

    def _all_flags(self) -> set[str]:
        flags = set()
        for action in self._actions:
            flags.update(s for s in action.option_strings if s.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    flags |= sub._all_flags()
        return flags


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


def _parse_switch(text: str) -> bool | str:
    value = {"true": True, "false": False, "auto": "auto"}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected auto, true or false, got {text!r}")
    return value


def add_switch_or_auto(parser, name: str, help_text: str, default=None) -> None:
    """`--NAME` (true), `--NAME auto|true|false` and `--no-NAME` (false), e.g. for bf16."""
    flag = "--" + name.replace("_", "-")
    parser.add_argument(
        flag, dest=name, nargs="?", const=True, type=_parse_switch, default=default, metavar="auto", help=help_text
    )
    parser.add_argument("--no-" + flag[2:], dest=name, action="store_const", const=False, help=argparse.SUPPRESS)


def _add_weights(parser: argparse.ArgumentParser, default_help: str) -> None:
    """--weights RUN_OR_FILE and --checkpoint last|best: the same two flags in every command that loads a model."""
    parser.add_argument(
        "--weights", default=None, metavar="RUN_OR_FILE", help=f"run folder or .safetensors file {default_help}"
    )
    parser.add_argument(
        "--checkpoint", default="last", choices=("last", "best"), help="which checkpoint of a run folder (default last)"
    )
    parser.add_argument("--which", dest="checkpoint", choices=("last", "best"), help=argparse.SUPPRESS)  # old name


def _top_k(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10 (CIFAR-10 has 10 classes), got {value}")
    return value


def _add_runtime(parser: argparse.ArgumentParser) -> None:
    """--device and --bf16 for the commands that run a model (default: chosen from the hardware)."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    add_switch_or_auto(
        parser,
        "bf16",
        "bfloat16 autocast: auto (where the hardware runs it natively and faster), true or false",
        default="auto",
    )


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
        elif spec.type == "bool | str":
            add_switch_or_auto(group, name, help_text)
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


def _stop_with_parent() -> None:
    """If the parent process dies (e.g. `make train` is killed with SIGKILL), get SIGTERM, which checkpoints and
    stops training, instead of running on as an orphan. Linux only; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from resnet_cifar.errors import ConfigError
    from resnet_cifar.train.config import load_config
    from resnet_cifar.train.loop import Interrupted
    from resnet_cifar.train.runner import exit_code_for, print_final_line, resume_config, run_training

    _stop_with_parent()
    overrides = _overrides(args)
    if args.resume and args.config:
        raise ConfigError(
            "--resume continues a run with its own configuration (RUN/config.yaml); drop --config "
            "(flags that only change where or how fast it runs, such as --device or --threads, may be given)"
        )
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
    from resnet_cifar.errors import ConfigError
    from resnet_cifar.evaluate.report import format_results
    from resnet_cifar.evaluate.runner import evaluate_source

    if args.source and args.weights:
        raise ConfigError("give the run folder or weights file once: as the argument or as --weights, not both")
    source = args.source or args.weights
    if source is None:
        raise ConfigError("name a run folder or weights file to evaluate (e.g. outputs/default)")
    if args.weights in ("last", "best") and not os.path.exists(args.weights):
        raise ConfigError(
            f"--weights names a run folder or weights file; for a run's {args.weights} checkpoint use "
            f"--checkpoint {args.weights}"
        )
    results = evaluate_source(
        source,
        which=args.checkpoint,
        tta=args.tta,
        data_dir=args.data_dir,
        download=not args.no_download,
        model_name=args.model,
        batch_size=args.batch_size,
        device=args.device,
        bf16=args.bf16,
        output_dir=args.output_dir,
    )
    print(format_results(results))
    print(f"results written to {results['path']}")
    print(f"test_accuracy={results['top1']:.4f}")
    return 0


def _evaluate_parser(sub) -> None:
    parser = sub.add_parser("evaluate", help="test-set accuracy, per-class accuracy and confusion matrix of a run")
    parser.add_argument(
        "source", nargs="?", default=None, metavar="RUN_OR_FILE", help="run folder or .safetensors file"
    )
    _add_weights(parser, "(the same as the argument)")
    parser.add_argument(
        "--tta",
        type=int,
        choices=(0, 1, 2),
        default=None,
        help="test-time augmentation: 0 none, 1 flip, 2 flip + translate (default: the run's)",
    )
    parser.add_argument("--model", default=None, help="model name, for weights files without metadata")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: the run's)")
    parser.add_argument(
        "--output-dir",
        default="outputs",
        help="where the results of a weights file outside a run folder go (a run's results go into the run folder)",
    )
    _add_runtime(parser)
    _add_data_dir(parser)
    parser.set_defaults(func=cmd_evaluate)


def cmd_plot(args: argparse.Namespace) -> int:
    from resnet_cifar.evaluate.runner import plot_run

    for path in plot_run(
        args.run, data_dir=args.data_dir, download=not args.no_download, device=args.device, bf16=args.bf16
    ):
        print(f"wrote {path}")
    return 0


def _plot_parser(sub) -> None:
    parser = sub.add_parser("plot", help="(re)write inference.png, curves.png and confusion_matrix.png of a run")
    parser.add_argument("run", help="run folder")
    _add_runtime(parser)
    _add_data_dir(parser)
    parser.set_defaults(func=cmd_plot)


# --- predict and export ------------------------------------------------------------------------------------------


def cmd_predict(args: argparse.Namespace) -> int:
    from resnet_cifar.inference.loading import load_model
    from resnet_cifar.inference.predict import format_json, format_table, predict_files

    loaded = load_model(args.weights, args.checkpoint, device=args.device)
    predictions = predict_files(loaded.model, args.images, top_k=args.top_k, tta=args.tta, bf16=args.bf16)
    print(format_json(predictions) if args.json else format_table(predictions, args.top_k))
    failed = [p for p in predictions if p.error]
    if failed:
        print(f"{len(failed)} of {len(predictions)} inputs failed", file=sys.stderr)
    return 1 if failed or not predictions else 0


def _predict_parser(sub) -> None:
    parser = sub.add_parser("predict", help="classify image files (PNG, JPEG, WebP, BMP, GIF), folders or globs")
    parser.add_argument("images", nargs="+", help="files, folders (searched recursively) or glob patterns")
    _add_weights(parser, "(default: the shipped weights, offline)")
    parser.add_argument("--top-k", type=_top_k, default=3, help="classes shown per image, 1 to 10 (default 3)")
    parser.add_argument("--tta", type=int, choices=(0, 1, 2), default=1, help="test-time augmentation level")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_runtime(parser)
    parser.set_defaults(func=cmd_predict)


def cmd_export(args: argparse.Namespace) -> int:

    from resnet_cifar.inference.export import export_model, output_path
    from resnet_cifar.inference.loading import load_model

    loaded = load_model(args.weights, args.checkpoint, device=args.device)
    output = output_path(args.output, loaded.name, args.format)
    export_model(loaded.model, args.format, output, opset=args.opset)
    print(
        f"exported {loaded.name} ({loaded.path}) to {output}: input float32 N x 3 x 32 x 32 in [0, 1], "
        "output logits N x 10"
    )
    return 0


def _export_parser(sub) -> None:
    parser = sub.add_parser("export", help="export to ONNX or TorchScript (dynamic batch, normalisation inside)")
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    _add_weights(parser, "(default: the shipped weights)")
    parser.add_argument("--output", default=None, help="output file or folder (default: outputs/<model>.onnx or .pt)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    parser.add_argument(
        "--device", default="cpu", help="where to trace the model (default cpu: a file that runs anywhere; or auto)"
    )
    parser.set_defaults(func=cmd_export)


# --- experiments -------------------------------------------------------------------------------------------------


def cmd_gradient_flow(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from resnet_cifar.experiments.gradient_flow import (
        GradientFlowSettings,
        run_gradient_flow,
        summary_lines,
        write_gradient_flow,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = GradientFlowSettings(
        depths=tuple(args.depths), steps=args.steps, batch_size=args.batch_size, seed=args.seed, data_dir=args.data_dir
    )
    if args.quick:
        settings.train_pool = 1000
    results = run_gradient_flow(settings)
    print("\n".join(summary_lines(results)))
    for path in write_gradient_flow(results, Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_degradation(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from resnet_cifar.experiments.degradation import (
        DegradationSettings,
        run_degradation,
        table_lines,
        write_degradation,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    make = DegradationSettings.quick if args.quick else DegradationSettings
    settings = make(seed=args.seed, data_dir=args.data_dir)
    if args.epochs:
        settings.epochs = args.epochs
    if args.schedule == "step":
        settings.use_paper_step_schedule()
    results = run_degradation(settings, Path(args.out))
    print("\n".join(table_lines(results)))
    print(f"total {results['total_seconds'] / 60:.1f} minutes")
    for path in write_degradation(results, Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_data_efficiency(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    import yaml

    from resnet_cifar.errors import ConfigError
    from resnet_cifar.experiments.data_efficiency import (
        DataEfficiencySettings,
        run_data_efficiency,
        table_lines,
        write_data_efficiency,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    make = DataEfficiencySettings.quick if args.quick else DataEfficiencySettings
    settings = make(data_dir=args.data_dir, device=args.device, threads=args.threads)
    for key in ("sizes", "seeds", "steps", "model"):
        if getattr(args, key) is not None:
            setattr(settings, key, tuple(getattr(args, key)) if key in ("sizes", "seeds") else getattr(args, key))
    if args.model is not None and args.model_options is None:
        settings.model_options = {}  # the default options are fastnet's
    if args.model_options is not None:
        settings.model_options = yaml.safe_load(args.model_options) or {}
        if not isinstance(settings.model_options, dict):
            raise ConfigError(f"--model-options: expected a YAML mapping, got {args.model_options!r}")
    out = Path(args.out)
    results = run_data_efficiency(settings, out, train=not args.report_only)
    print("\n".join(table_lines(results)))
    print(f"{results['seconds'] / 60:.1f} minutes of training and testing in all ({results['budget']})")
    for path in write_data_efficiency(results, out):
        print(f"wrote {path}")
    return 0


def _experiment_parser(sub) -> None:
    parser = sub.add_parser("experiment", help="measure why residual connections work")
    experiments = parser.add_subparsers(dest="experiment", required=True)
    flow = experiments.add_parser("gradient-flow", help="per-layer gradient norms, plain vs residual, +/- batch norm")
    flow.add_argument("--out", default="outputs/gradient-flow", help="folder for gradient_flow.json and .png")
    flow.add_argument("--depths", type=int, nargs="+", default=[20, 56, 110])
    flow.add_argument("--steps", type=int, default=100, help="K: training steps before the second measurement")
    flow.add_argument("--batch-size", type=int, default=128)
    flow.add_argument("--quick", action="store_true", help="draw the K steps from 1,000 images only")
    degradation = experiments.add_parser("degradation", help="plain vs residual 20/32/44/56, same recipe and budget")
    degradation.add_argument("--out", default="outputs/degradation", help="folder for the JSON files and the plot")
    degradation.add_argument("--quick", action="store_true", help="2 epochs of 5,000 images (a few minutes)")
    degradation.add_argument("--epochs", type=float, default=None, help="override the budget in epochs")
    degradation.add_argument(
        "--schedule",
        choices=("onecycle", "step"),
        default="onecycle",
        help="onecycle (default: warm-up to lr 0.1, then down) or step (the paper's, compressed; lr 0.1 at once)",
    )
    efficiency = experiments.add_parser(
        "data-efficiency", help="test accuracy vs training-set size, residual vs plain twin, same step budget"
    )
    efficiency.add_argument("--out", default="outputs/data-efficiency", help="folder for the JSON, plot and points")
    efficiency.add_argument("--quick", action="store_true", help="4 sizes, 1 seed, 150 steps (about 6 minutes)")
    efficiency.add_argument("--sizes", type=int, nargs="+", default=None, help="training-set sizes (multiples of 10)")
    efficiency.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2; quick: 0)")
    efficiency.add_argument("--steps", type=int, default=None, help="optimizer steps per point (default 1000)")
    efficiency.add_argument("--model", default=None, help="fastnet (default) or a CIFAR ResNet such as resnet20")
    efficiency.add_argument("--model-options", default=None, help="YAML mapping of builder options")
    efficiency.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    efficiency.add_argument(
        "--report-only", action="store_true", help="summarise the points already in --out (train nothing)"
    )
    for command, func in ((flow, cmd_gradient_flow), (degradation, cmd_degradation)):
        command.add_argument("--seed", type=int, default=0)
        command.set_defaults(func=func)
    efficiency.set_defaults(func=cmd_data_efficiency)
    for command in (flow, degradation, efficiency):
        command.add_argument("--threads", type=int, default=0, help="CPU threads (0: one per core)")
        command.add_argument("--data-dir", default=None)


# --- entry point -------------------------------------------------------------------------------------------------

SUBCOMMANDS: list[Callable] = [
    _train_parser,
    _evaluate_parser,
    _plot_parser,
    _predict_parser,
    _export_parser,
    _experiment_parser,
    _models_parser,
    _data_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="resnet-cifar", description="Residual Networks on CIFAR-10: train, evaluate, show, measure.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _run(args)
    try:
        code = _run(args)
    except BaseException:  # a bug: show it, then still exit without teardown
        import traceback

        traceback.print_exc()
        code = 1
    _exit_without_teardown(code)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.func(args)
    except Interrupted as stop:  # the loop has written its checkpoint and said how to continue
        return 128 + int(stop.signum)
    except ResnetCifarError as error:
        print(f"resnet-cifar: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("resnet-cifar: interrupted", file=sys.stderr)
        return 130


def _exit_without_teardown(code: int) -> None:
    """End a torchrun worker without running destructors. Freeing DDP's reducer drops the last reference to the gloo
    process group, whose destructor joins its worker thread while holding the GIL; if that thread is still freeing a
    finished collective's tensors it needs the GIL too, and the process hangs for ever (seen here under load; the
    same family as pytorch#75097 and pytorch#179291). Everything has been written (checkpoints are fsynced and renamed),
    so only the output streams are flushed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
