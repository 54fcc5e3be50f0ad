"""`resnet-cifar import`: other repositories' CIFAR ResNet checkpoints as our weights, read with
`torch.load(weights_only=True)` only. akamaster's, kuangliu's and torchvision-style (chenyaofo's) key layouts map onto
ours by a few renames; the model is told from the tensors unless named, every shape is checked, and the written file
records the model, its shortcut padding, its normalisation and where it came from."""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import clean_state_dict, other_file_kind, save_checkpoint
from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.data.normalization import CIFAR10, IMAGENET, Normalization
from resnet_cifar.errors import CheckpointError, ConfigError
from resnet_cifar.models import create_model, list_models, model_spec

# The containers the repositories save their state dict in, in the order they are looked for.
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net", "state")
RENAMES = (
    (r"^conv1\.", "stem.0."), (r"^bn1\.", "stem.1."), (r"^(linear|fc|classifier)\.", "fc."),
    (r"^(bn|bn_final|final_bn)\.", "final_act.0."), (r"\.downsample\.", ".shortcut."),
)
SHORTCUT_FAMILIES = ("cifar-resnet", "preact-cifar", "resnet", "preact-resnet")  # builders taking `shortcut`
IMAGENET_LAYOUTS = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}


@dataclass
class Imported:
    path: Path
    model: str
    options: dict
    layout: str
    normalization: Normalization
    normalization_source: str
    tensors: int
    reported: dict = field(default_factory=dict)


def read_foreign(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, the other plain values saved beside it) of a torch.save file, loaded without unpickling objects."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    with open(path, "rb") as handle:
        start = handle.read(8)
    if not start.startswith(b"PK\x03\x04") and start[:1] != b"\x80":  # neither torch.save's zip nor a pickle
        kind = "a safetensors file: use it as it is" if path.suffix == ".safetensors" else other_file_kind(path)
        raise CheckpointError(f"{path} is not a torch.save checkpoint ({kind or 'expected a zip or pickle file'})")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} holds Python objects besides tensors ({refused_object(str(error))}), and is never unpickled here"
        ) from None
    except Exception as error:  # not a torch.save file at all: zip/pickle readers raise several types
        raise CheckpointError(f"{path} is not a readable torch.save checkpoint: {error}") from None
    extras: dict[str, Any] = {}
    if isinstance(loaded, dict) and not _is_state_dict(loaded):
        extras = {k: v for k, v in loaded.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}
        inner = next((loaded[k] for k in STATE_KEYS if _is_state_dict(loaded.get(k))), None)
        if inner is None:
            raise CheckpointError(
                f"{path} holds no state dict: expected tensors by name, or one under {', '.join(STATE_KEYS)}; "
                f"found keys {sorted(map(str, loaded))[:6]}"
            )
        loaded = inner
    if not _is_state_dict(loaded):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state dict of tensors")
    return dict(loaded), extras


def refused_object(message: str) -> str:
    """The object PyTorch's weights-only unpickler refused, named from its message (`posix.system`,
    `torch.optim.sgd.SGD`), without the advice to load it with weights_only=False, which is never given here."""
    found = re.search(r"GLOBAL ([\w.]+)", message) or re.search(r"WeightsUnpickler error: ([^.\n]+)", message)
    return found.group(1) if found else "an object the safe loader does not allow"


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(t, torch.Tensor) for t in value.values())


def our_key(name: str) -> str:
    """A foreign parameter name in our layout (`layer2.0.downsample.0.weight` -> `stages.1.0.shortcut.0.weight`)."""
    for pattern, replacement in RENAMES:
        name = re.sub(pattern, replacement, name)
    return re.sub(r"^layer(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.", name)


def detect_layout(keys: list[str], extras: dict) -> str:
    """Which repository's layout the (prefix-free) keys are in: akamaster, kuangliu, torchvision or ours."""
    if any(k.startswith(("stem.", "stages.")) for k in keys):
        return "ours"
    projections = any(".shortcut." in k or ".downsample." in k for k in keys)
    if any(k.startswith("linear.") for k in keys):
        # akamaster is the option-A repository that names its classifier `linear` (kuangliu uses projections)
        return "akamaster" if not projections or "best_prec1" in extras else "kuangliu"
    return "torchvision"


def infer_model(state: dict[str, torch.Tensor]) -> tuple[str, dict]:
    """The registered model (and options) whose layers these tensors (in our layout) describe."""
    stages: dict[int, int] = {}
    for key in state:
        if match := re.match(r"stages\.(\d+)\.(\d+)\.", key):
            stage, block = int(match.group(1)), int(match.group(2))
            stages[stage] = max(stages.get(stage, 0), block + 1)
    layout = tuple(stages[s] for s in sorted(stages))
    bottleneck = any(".conv3." in k for k in state)
    preact = any(k.startswith("final_act.") for k in state)
    shortcut = "B" if any(".shortcut." in k for k in state) else "A"
    width = state.get("stages.0.0.conv1.weight")
    prefix = "preact_" if preact else ""
    if len(layout) == 3 and width is not None and width.shape[0] == 16 and len(set(layout)) == 1:
        depth = (9 if bottleneck else 6) * layout[0] + 2
        name = f"{prefix}resnet{depth}"
    elif len(layout) == 4 and layout in IMAGENET_LAYOUTS:
        depth = IMAGENET_LAYOUTS[layout] if not (bottleneck and layout == (3, 4, 6, 3)) else 50
        name = f"{prefix}resnet{depth}"
    else:
        name = ""
    if name not in list_models():
        raise ConfigError(
            f"cannot tell which model these weights are for ({len(layout)} stages of {list(layout)} blocks"
            f"{', bottleneck' if bottleneck else ''}{', pre-activation' if preact else ''}): pass --model NAME"
        )
    return name, {"shortcut": shortcut}


def fit_to_model(state: dict[str, torch.Tensor], sources: dict[str, str], model: torch.nn.Module, name: str) -> dict:
    """The tensors under the model's own names, every shape checked; one line naming the first key that misfits."""
    target = model.state_dict()
    fitted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key not in target and key.replace(".shortcut.0.", ".shortcut.") in target:
            key = key.replace(".shortcut.0.", ".shortcut.")  # a projection written as a 1-layer Sequential
        if key not in target:
            raise CheckpointError(f"key {sources.get(key, key)!r} has no place in {name} (as {key!r})")
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise CheckpointError(
                f"key {sources.get(key, key)!r} has shape {list(tensor.shape)}, {name} expects "
                f"{list(target[key].shape)} at {key!r}"
            )
        fitted[key] = tensor.to(target[key].dtype)
    for key, expected in target.items():
        if key in fitted:
            continue
        if key.endswith("num_batches_tracked"):  # older PyTorch did not save it
            fitted[key] = torch.zeros_like(expected)
        else:
            raise CheckpointError(f"{name} needs {key!r}, which the file does not have")
    return fitted


def import_checkpoint(
    source: Path | str, output: Path | str, *, model_name: str | None = None, shortcut_padding: str | None = None,
    normalization: Normalization | None = None, overwrite: bool = False,
) -> Imported:
    """Read a published checkpoint, fit it to one of our models, and write it as our weights file at `output`."""
    source, output = Path(source), Path(output)
    run_folder.refuse_overwrite(output, overwrite, inputs=[source])
    raw, extras = read_foreign(source)
    cleaned = clean_state_dict(raw)
    layout = detect_layout(list(cleaned), extras)
    sources = {our_key(next(iter(clean_state_dict({k: t})))): k for k, t in raw.items()}  # ours -> as in the file
    state = {our_key(k): t for k, t in cleaned.items()}
    model_name, options = _model_of(state, model_name, layout, shortcut_padding)
    model = _build(model_name, options)
    classes = model.fc.out_features if hasattr(model, "fc") else len(CLASSES)
    head = state.get("fc.weight")
    if head is not None and head.shape[0] != classes:
        raise CheckpointError(
            f"{source} classifies into {head.shape[0]} classes; this tool's data and class names are CIFAR-10's "
            f"({len(CLASSES)})"
        )
    fitted = fit_to_model(state, sources, model, model_name)
    normalization, norm_source = _normalization_of(layout, normalization)
    metadata = {
        "model": model_name,
        "model_options": options,
        "normalization": normalization.as_dict(),
        "classes": list(CLASSES),
        # how the weights are tested: in fp32 as published, without TTA, in the memory format they load in
        "test_setting": {"tta": 0, "batch_size": 1000, "channels_last": False},
        "runtime": {"precision": "fp32"},
        "imported": {
            "file": source.name,
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
            "layout": layout,
            "tensors": len(raw),
            "normalization": norm_source,
            "reported": extras,
        },
    }
    save_checkpoint(output, {f"model.{k}": t for k, t in fitted.items()}, metadata)
    return Imported(output, model_name, options, layout, normalization, norm_source, len(raw), extras)


def _model_of(state: dict, model_name: str | None, layout: str, shortcut_padding: str | None) -> tuple[str, dict]:
    """The model (told from the tensors unless named) and its options; option A's padding as the layout has it."""
    if model_name is None:
        model_name, options = infer_model(state)
    elif model_spec(model_name).family in SHORTCUT_FAMILIES:
        options = {"shortcut": "B" if any(".shortcut." in k for k in state) else "A"}
    else:
        options = {}
    if options.get("shortcut") == "A":
        options["shortcut_padding"] = shortcut_padding or ("split" if layout == "akamaster" else "after")
    return model_name, options


def _normalization_of(layout: str, given: Normalization | None) -> tuple[Normalization, str]:
    """The input statistics the weights were trained with, and where that knowledge comes from."""
    if given is not None:
        return given, "given on the command line"
    if layout == "akamaster":
        return IMAGENET, "akamaster/pytorch_resnet_cifar10 trains with ImageNet's statistics"
    return CIFAR10, "not recorded in the file: assumed CIFAR-10's (pass --mean/--std)"


def _build(name: str, options: dict) -> torch.nn.Module:
    try:
        return create_model(name, **options)
    except TypeError as error:
        raise ConfigError(f"model {name} does not take the options {options}: {error}") from None
