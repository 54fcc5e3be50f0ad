"""The training configuration: one typed dataclass; defaults < YAML file (`--config`) < command-line flags. Every field
carries its help text and, where it has them, its choices and bounds; `load_config` validates everything before any
work starts, each problem one line."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resnet_cifar.choices import AUGMIX_MODES, PAD_MODES, PRECISIONS, TTA_LEVELS
from resnet_cifar.errors import ConfigError
from resnet_cifar.files import atomic_write_bytes, read_text_bounded
from resnet_cifar.run_folder import OUTPUT_DIR
from resnet_cifar.yaml_text import float_spelling, load_yaml


@dataclass(frozen=True)
class Bound:
    """The range a number must lie in (`high` None: no upper end); `*_open`: that end is excluded. Every setting
    here has a lower end, so `low` is always a number."""

    low: float = 0.0
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, key: str, value: float) -> None:
        too_low = value <= self.low if self.low_open else value < self.low
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            raise ConfigError(f"{key}: must be {self}, got {value}")

    def __str__(self) -> str:
        if self.high is None:
            if self.low == 0:
                return "positive" if self.low_open else "zero or more"
            return f"{'more than' if self.low_open else 'at least'} {self.low:g}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


MAX_CONFIG_BYTES = 256 * 1024  # a configuration is a few hundred bytes; anything this large is not one
POSITIVE = Bound(0, low_open=True)
NON_NEGATIVE = Bound(0)
FRACTION = Bound(0, 1, high_open=True)  # [0, 1)
SEEDS = Bound(0, 2**63 - 1)  # what torch.manual_seed takes
SHARE = Bound(0, 1, low_open=True)  # (0, 1]
SCHEDULES = ("onecycle", "cosine", "linear", "step", "constant")
PROGRESS = ("auto", "bar", "lines", "none")


def _opt(default: Any, help: str, choices: tuple | None = None, bound: Bound | None = None, **kwargs) -> Any:
    metadata = {"help": help, "choices": choices, "bound": bound}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class TrainConfig:
    # --- run -----------------------------------------------------------------------------------------------------
    name: str | None = _opt(None, "run folder name under output_dir (default: config file stem, else model name)")
    output_dir: str = _opt(OUTPUT_DIR, "folder that holds the run folders")
    seed: int = _opt(0, "seed for weight init, data order and augmentation", bound=SEEDS)
    data_seed: int = _opt(0, "seed for the validation split and the training subset (fixed across seeds)", bound=SEEDS)
    device: str = _opt("auto", "cpu, cuda, cuda:N or auto (cuda when available)")
    accumulate: int = _opt(1, "micro-batches per step and process, gradients summed (BN sees each)", bound=POSITIVE)
    threads: int = _opt(0, "CPU threads for PyTorch (0: one per core)", bound=NON_NEGATIVE)
    deterministic: bool = _opt(False, "use deterministic algorithms only (bit-identical reruns on CPU)")
    # --- data ----------------------------------------------------------------------------------------------------
    data_dir: str | None = _opt(None, "CIFAR-10 folder or archive (default: $RESNET_CIFAR_DATA, then ./data)")
    download: bool = _opt(True, "download the official archive when no data is found")
    train_size: int | None = _opt(None, "class-balanced training subset (default: all but validation)", bound=POSITIVE)
    val_size: int = _opt(5000, "validation images carved from the training set (0: none)", bound=Bound(0, 49_990))
    # --- model ---------------------------------------------------------------------------------------------------
    model: str = _opt("resnet20", "registered model name (see `resnet-cifar models`)")
    model_options: dict = _opt({}, "keyword arguments for the model builder, e.g. {shortcut: B}")
    # --- optimisation --------------------------------------------------------------------------------------------
    epochs: float = _opt(30, "training length in epochs (ignored when steps is set)", bound=POSITIVE)
    steps: int | None = _opt(None, "training length in optimizer steps (overrides epochs)", bound=POSITIVE)
    batch_size: int = _opt(128, "images per optimizer step (all processes together under DDP)", bound=POSITIVE)
    lr: float = _opt(0.1, "peak learning rate (for the global batch)", bound=POSITIVE)
    momentum: float = _opt(0.9, "SGD momentum", bound=FRACTION)
    optimizer: str = _opt("sgd", "sgd, or muon: Muon for the filters, SGD for the rest", choices=("sgd", "muon"))
    muon_lr: float = _opt(0.24, "optimizer muon: the filters' peak lr (scheduled like lr)", bound=POSITIVE)
    muon_momentum: float = _opt(0.6, "optimizer muon: the filters' Nesterov momentum", bound=FRACTION)
    nesterov: bool = _opt(True, "Nesterov momentum")
    weight_decay: float = _opt(5e-4, "L2 weight decay", bound=NON_NEGATIVE)
    decay_norm_and_bias: bool = _opt(True, "apply weight decay to norm scales and biases too (the paper does)")
    bias_lr_scale: float = _opt(1.0, "batch norms' shifts learn at lr x this (decay / this)", bound=POSITIVE)
    schedule: str = _opt("onecycle", "learning-rate schedule", choices=SCHEDULES)
    warmup_epochs: float = _opt(0.0, "warmup: linear from lr * warmup_start to lr (step: constant)", bound=NON_NEGATIVE)
    warmup_steps: int | None = _opt(None, "warmup length in steps (overrides warmup_epochs)", bound=NON_NEGATIVE)
    warmup_start: float = _opt(0.1, "warmup starts at this fraction of lr", bound=Bound(0, 1, low_open=True))
    final_lr: float = _opt(0.0, "the decay ends at this fraction of lr (cosine/linear/onecycle)", bound=Bound(0, 1))
    milestones: list = _opt([], "step schedule: where lr is multiplied by gamma (see milestone_unit)")
    milestone_unit: str = _opt("epoch", "unit of milestones", choices=("epoch", "step"))
    gamma: float = _opt(0.1, "step schedule: factor at each milestone", bound=Bound(0, 1, low_open=True))
    label_smoothing: float = _opt(0.0, "label smoothing of the cross-entropy loss", bound=FRACTION)
    grad_clip: float = _opt(0.0, "clip the global gradient norm to this value (0: off)", bound=NON_NEGATIVE)
    ema: float = _opt(0.0, "moving average of the weights, decay per step (0: off; e.g. 0.999)", bound=FRACTION)
    ema_warmup: float = _opt(0.0, "epochs before the average starts (it copies the weights)", bound=NON_NEGATIVE)
    # --- augmentation --------------------------------------------------------------------------------------------
    crop_padding: int = _opt(4, "random crop: pixels of padding on each side (0: no crop)", bound=Bound(0, 16))
    pad_mode: str = _opt("reflect", "random crop padding", choices=PAD_MODES)
    flip: bool = _opt(True, "random horizontal flip")
    alternate_flips: bool = _opt(False, "flip each image every other epoch instead of at random (airbench)")
    cutout: int = _opt(0, "cutout square side in pixels (0: off)", bound=Bound(0, 32))
    augmix: str = _opt("off", "AugMix: off, mix (one view) or jsd (clean + two views)", choices=AUGMIX_MODES)
    augmix_severity: int = _opt(3, "AugMix operations' magnitude, of 10", bound=Bound(1, 10))
    brightness: float = _opt(0.0, "add U(-b, b) to each normalised training image (0: off)", bound=Bound(0, 1))
    contrast: float = _opt(0.0, "multiply each normalised training image by U(1-c, 1+c) (0: off)", bound=FRACTION)
    crop_size: int = _opt(32, "side of the random training crop (< 32: see full_size_epochs)", bound=Bound(8, 32))
    full_size_epochs: int = _opt(1, "with crop_size < 32: the last epochs on whole images", bound=NON_NEGATIVE)
    # --- speed ---------------------------------------------------------------------------------------------------
    precision: str = _opt("auto", "bf16 or fp32; auto: bf16 where the hardware runs it natively", choices=PRECISIONS)
    channels_last: bool = _opt(True, "channels-last memory format")
    compile: bool = _opt(False, "torch.compile the model (pays a one-off compile time)")
    # --- evaluation and outputs ----------------------------------------------------------------------------------
    tta: int = _opt(1, "test-time augmentation: 0 none, 1 flip, 2 flip + translate", choices=TTA_LEVELS)
    tta_share: float = _opt(1.0, "share of the images, least confident first, given the TTA views", bound=SHARE)
    eval_every: int = _opt(1, "validate every N epochs (the last epoch is always validated)", bound=POSITIVE)
    eval_batch_size: int = _opt(1000, "images per evaluation forward pass", bound=POSITIVE)
    checkpoint_every: int = _opt(1, "write the `last` checkpoint every N epochs (and at the end)", bound=POSITIVE)
    stop_after_epochs: int | None = _opt(None, "checkpoint and exit after N epochs, to --resume later", bound=POSITIVE)
    test_at_end: bool = _opt(True, "evaluate on the test set after training and print test_accuracy=")
    plots: bool = _opt(True, "write inference.png, curves.png and confusion_matrix.png at the end")
    publish_picture: bool = _opt(False, "also copy inference.png to OUTPUT_DIR/inference.png (make train's picture)")
    sync_bn: bool = _opt(False, "SyncBatchNorm under DDP (batch statistics over all ranks)")
    progress: str = _opt("auto", "progress: bar, lines (one per epoch), none or auto", choices=PROGRESS)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# The keys that may change when a run resumes, because they change where and how fast it computes, or its rounding
# (micro-batches), not what it computes. The precision is not among them: a resumed run computes in the one it began
# in (its checkpoint records the answer).
RUNTIME_KEYS = (
    "threads", "device", "accumulate", "progress", "data_dir", "download", "compile", "plots", "stop_after_epochs",
)
_TYPES = typing.get_type_hints(TrainConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _coerce(key: str, value: Any) -> Any:
    """Check `value` against the field's annotation (YAML already parsed it); ints are accepted as floats."""
    tp = _TYPES[key]
    options = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key}: must not be null")
    for option in options:
        if option is type(None):
            continue
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, str):
            value = float_spelling(value)
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{key}: must be a finite number, got {value!r}")
            return float(value)
        if option in (str, list, dict) and isinstance(value, option):
            return value
    expected = " or ".join(_type_name(o) for o in options)
    raise ConfigError(f"{key}: expected {expected}, got {value!r} ({type(value).__name__})")


# Names other trainers use for our keys, suggested when they are given (difflib finds typos, not synonyms).
ALIASES = {
    "learning_rate": "lr", "base_lr": "lr", "max_lr": "lr", "lr_schedule": "schedule", "scheduler": "schedule",
    "wd": "weight_decay", "bs": "batch_size", "num_epochs": "epochs", "max_epochs": "epochs", "max_steps": "steps",
    "smoothing": "label_smoothing", "arch": "model", "network": "model", "amp": "precision", "bf16": "precision",
    "workers": "threads", "out_dir": "output_dir", "data_root": "data_dir",
}


def suggest_key(key: str) -> str | None:
    """The config key meant by `key` (a synonym or a near spelling), or None."""
    if key in ALIASES:
        return ALIASES[key]
    close = difflib.get_close_matches(key, FIELDS, n=1)
    return close[0] if close else None


def _unknown_key(key: str) -> ConfigError:
    if not (key.isidentifier() and len(key) <= 40):  # never quote a line of some other file (--config /etc/passwd)
        return ConfigError("not a configuration: a key that is no configuration key's name")
    close = [suggest_key(key)] if suggest_key(key) else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def apply_overrides(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """A copy of `config` with `overrides` (already parsed values) applied and type-checked."""
    values = config.to_dict()
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in FIELDS:
            raise _unknown_key(key)
        values[key] = _coerce(key, value)
    return TrainConfig(**values)


def read_yaml(path: Path | str, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's keys; `base: other.yaml` (relative to the file) is read first and overridden."""
    path = Path(path)
    data = _read_mapping(path)
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = _relative(path, base, "base")
    if base_path in _seen or base_path == path.resolve():
        raise ConfigError(f"{path}: circular base {base}")
    return {**read_yaml(base_path, (*_seen, path.resolve())), **data}


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = read_text_bounded(path, MAX_CONFIG_BYTES, "config file")
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    except ValueError as error:
        raise ConfigError(str(error)) from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        problem = getattr(error, "problem", None) if isinstance(error, yaml.constructor.ConstructorError) else None
        raise ConfigError(f"{path}: invalid YAML{line}{f': {problem}' if problem else ''}") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ConfigError(f"{path}: expected a mapping of config keys to values")
    return data


def validate(config: TrainConfig) -> TrainConfig:
    """Reject impossible values with one clear line each."""
    _check_model(config)
    _check_name(config.name)
    for key, spec in FIELDS.items():
        value = getattr(config, key)
        choices, bound = spec.metadata.get("choices"), spec.metadata.get("bound")
        if choices and value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices))}; got {value!r}")
        if bound is not None and value is not None:
            bound.check(key, value)
    if config.val_size % 10:
        raise ConfigError(f"val_size: must be a multiple of 10 (classes), got {config.val_size}")
    if config.train_size is not None:
        available = 50_000 - config.val_size
        if config.train_size % 10:
            raise ConfigError(f"train_size: must be a positive multiple of 10 (classes), got {config.train_size}")
        if config.train_size > available:
            raise ConfigError(
                f"train_size: {config.train_size} is larger than the {available} images left after val_size "
                f"{config.val_size}"
            )
        if config.batch_size > config.train_size:
            raise ConfigError(
                f"batch_size: {config.batch_size} is larger than train_size {config.train_size}; "
                f"use --batch-size {config.train_size} or less"
            )
    if config.accumulate > config.batch_size:
        raise ConfigError(f"accumulate: {config.accumulate} micro-batches of a {config.batch_size}-image batch")
    if config.schedule == "step" and not all(
        isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0 for m in config.milestones
    ):
        raise ConfigError(f"milestones: expected a list of positive numbers, got {config.milestones!r}")
    if config.alternate_flips and not config.flip:
        raise ConfigError("alternate_flips: needs flip: true (it decides which epochs flip an image)")
    from resnet_cifar.runtime import named_device

    named_device(config.device)  # the name only: whether that device exists is the runtime's question, at run time
    return config


def _check_name(name: str | None) -> None:
    """A run name is one folder name: no path separators, nothing that climbs out of output_dir."""
    if name is None:
        return
    if not name.strip() or name in (".", "..") or any(sep in name for sep in ("/", "\\")) or name.startswith("-"):
        raise ConfigError(f"name: must be a plain folder name (no '/', not '..', not starting with '-'), got {name!r}")


def _check_model(config: TrainConfig) -> None:
    """A registered name, and options its builder takes, so that a typo fails before any work; the values are checked
    where the model is built, once (train/build.py: the Trainer builds it before it reads any data)."""
    import inspect

    from resnet_cifar.models.registry import model_spec

    if not all(isinstance(key, str) for key in config.model_options):
        raise ConfigError("model_options: keys must be names")
    try:
        inspect.signature(model_spec(config.model).builder).bind(**config.model_options)
    except TypeError as error:
        raise ConfigError(f"model_options for {config.model}: {error}") from None


def load_config(path: Path | str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then the YAML file, then `overrides` (CLI flags); validated. The precision stays the request it is
    (auto included): the entry point resolves it once (resnet_cifar.runtime) and the run records the answer."""
    config = TrainConfig()
    if path is not None:
        try:
            config = apply_overrides(config, read_yaml(path))
        except ConfigError as error:
            message = str(error)
            raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}") from None
        if config.name is None:
            config = dataclasses.replace(config, name=Path(path).stem)
    if overrides:
        config = apply_overrides(config, overrides)
    return validate(config)


def _relative(path: Path | str, other: Any, key: str) -> Path:
    if not isinstance(other, str):
        raise ConfigError(f"{path}: {key} must be a file name, got {other!r}")
    return (Path(path).parent / other).resolve()


def save_config(config: TrainConfig, path: Path) -> None:
    atomic_write_bytes(path, yaml.safe_dump(config.to_dict(), sort_keys=False).encode())


def parse_cli_value(text: str) -> Any:
    """A flag's value, parsed like a YAML scalar/list ("0.1" -> 0.1, "[1, 2]" -> list, "null" -> None)."""
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def config_from_record(recorded: dict[str, Any]) -> TrainConfig:
    """The TrainConfig a run recorded (its checkpoint's or config.yaml's keys, a model card's `config`)."""
    return apply_overrides(TrainConfig(), recorded)


def add_config_flags(parser) -> None:
    """One flag per TrainConfig field (`--batch-size 256`, `--flip/--no-flip`, `--precision bf16`); values parse
    like YAML; each flag's help is the field's."""
    import argparse

    group = parser.add_argument_group("configuration (override the YAML file)")
    for name, spec in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        help_text = spec.metadata["help"]
        choices = spec.metadata.get("choices")
        if choices:
            help_text += f" ({'/'.join(map(str, choices))})"
        if _TYPES[name] is bool:
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=name, default=None, metavar="V", help=help_text)


def flag_overrides(args) -> dict[str, Any]:
    """The configuration fields the command line sets (flags given): text fields (names, folders) as typed, the
    others parsed like YAML (`--name 010` is the folder 010, not the octal number 8)."""
    overrides = {}
    for name in FIELDS:
        value = getattr(args, name, None)
        if value is not None:
            text_field = str in (*typing.get_args(_TYPES[name]), _TYPES[name])
            overrides[name] = value if isinstance(value, bool) or text_field else parse_cli_value(value)
    return overrides
