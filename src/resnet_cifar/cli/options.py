"""Flags shared by the commands: data folder, weights, device and precision, top-k."""

from __future__ import annotations

import argparse

from resnet_cifar.choices import PRECISIONS, TTA_LEVELS
from resnet_cifar.run_folder import CHECKPOINTS, OUTPUT_DIR


def add_data_dir(parser: argparse.ArgumentParser, download: bool = True) -> None:
    """--data-dir (and --no-download, for the commands that may download)."""
    parser.add_argument(
        "--data-dir", default=None, help="CIFAR-10 folder or archive (default: $RESNET_CIFAR_DATA, then ./data)"
    )
    parser.add_argument(  # a command that never downloads still accepts the flag (scripts pass it everywhere)
        "--no-download",
        action="store_true",
        help="fail instead of downloading missing data" if download else argparse.SUPPRESS,
    )


def add_weights(parser: argparse.ArgumentParser, default_help: str) -> None:
    """--weights RUN_OR_FILE and --checkpoint last|best: the same two flags in every command that loads a model."""
    parser.add_argument(
        "--weights", default=None, metavar="RUN_OR_FILE", help=f"run folder or .safetensors file {default_help}"
    )
    parser.add_argument(
        "--checkpoint", default="last", choices=CHECKPOINTS, help="which checkpoint of a run folder (default last)"
    )
    parser.add_argument("--model", default=None, help="model name, for weights files without metadata")
    parser.add_argument(
        "--model-options", type=yaml_mapping, default=None, metavar="YAML",
        help="builder options for --model, e.g. '{widths: [32, 64, 128]}' (default: the file's, else the model's)",
    )


def load_weights(args: argparse.Namespace, precision: str):
    """The model named by the flags `add_weights` adds (and --device), through inference.load_model."""
    from resnet_cifar.inference.loading import load_model

    return load_model(
        args.weights, args.checkpoint, model_name=args.model, model_options=args.model_options, device=args.device,
        precision=precision,
    )


def yaml_mapping(text: str) -> dict:
    """An argparse type for a YAML mapping such as `{widths: [16, 32, 64]}`."""
    import yaml

    from resnet_cifar.yaml_text import load_yaml

    try:
        value = load_yaml(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping such as '{{widths: [16, 32, 64]}}', got {text!r}")
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """An argparse type for counts such as batch sizes: a whole number of at least 1."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def top_k(text: str) -> int:
    value = _whole_number(text)
    if not 1 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be between 1 and 10 (CIFAR-10 has 10 classes), got {value}")
    return value


def add_runtime(parser: argparse.ArgumentParser) -> None:
    """--device and --precision for the commands that run a model (default: chosen from the hardware)."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS,
        help="bf16 (autocast) or fp32; auto: as the weights were tested, where this machine computes that natively",
    )


def add_tta(parser: argparse.ArgumentParser, default: int | None, default_help: str) -> None:
    """--tta LEVEL, one of TTA_LEVELS."""
    parser.add_argument(
        "--tta", type=int, choices=TTA_LEVELS, default=default,
        help=f"test-time augmentation: 0 none, 1 flip, 2 flip + translate ({default_help})",
    )


def add_explain(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """`flag` (predict: --explain OUT.png; plot: --explain) and --cam-layer, the layer the maps are taken at."""
    parser.add_argument(flag, default=None, **kwargs)
    parser.add_argument(
        "--cam-layer", default=None, metavar="NAME",
        help="layer for the class-activation maps, as in model.named_modules() (default: the last stage)",
    )


def add_output_dir(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--output-dir", default=OUTPUT_DIR, help=f"{help_text} (default {OUTPUT_DIR})")
