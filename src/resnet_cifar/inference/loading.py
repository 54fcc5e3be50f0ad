"""Load a trained model from a run folder or a weights file (safetensors; never pickle)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import clean_state_dict, load_checkpoint, recorded_precision, split_prefix
from resnet_cifar.config import TrainConfig, config_from_record
from resnet_cifar.data.normalization import Normalization, recorded_normalization
from resnet_cifar.errors import CheckpointError, ConfigError
from resnet_cifar.inference.calibration import NO_TEMPERATURE, temperature_of
from resnet_cifar.models import create_model
from resnet_cifar.runtime import Runtime, choose_runtime


@dataclass
class LoadedModel:
    model: nn.Module  # in eval mode
    name: str
    options: dict
    path: Path
    runtime: Runtime  # where the model is and the precision to run it in
    metadata: dict = field(default_factory=dict)
    ema_weights: bool = False  # the exponential moving average of the weights was loaded
    config: TrainConfig | None = None  # what they were trained with (a run's, a shipped card's); None: unknown

    @property
    def in_run(self) -> bool:
        """Whether the weights are a checkpoint in its run's folder (results go there), not a bare weights file."""
        return "config" in self.metadata and (self.run_dir / run_folder.CONFIG).is_file()

    @property
    def channels_last(self) -> bool:
        """The memory format the weights were trained and tested in (the model is in it; feed batches in it)."""
        return self.config is not None and self.config.channels_last

    @property
    def normalization(self) -> Normalization:
        """The input statistics the weights were trained with (CIFAR-10's for files that do not say)."""
        return recorded_normalization(self.metadata)

    @property
    def temperature(self) -> float:
        """The temperature fitted on the validation split for these weights (1.0 where none was): probabilities are
        softmax(logits / temperature)."""
        return temperature_of(recorded_calibration(self.metadata))

    @property
    def run_dir(self) -> Path:
        return self.path.parent


WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # shipped inside the package: no download, ever
DEFAULT_NAME = "robust"  # the weights used when none are named: configs/robust.yaml, chosen for real photos
DEFAULT_WEIGHTS = WEIGHTS_DIR / f"{DEFAULT_NAME}.safetensors"


def shipped_weights() -> list[str]:
    """The names of the weights shipped with the package ("robust", and the paper ResNets such as "resnet56")."""
    return sorted(path.stem for path in WEIGHTS_DIR.glob("*.safetensors"))


def shipped_path(name: str) -> Path:
    """The file of the shipped weights called `name`; CheckpointError listing the names when there is none."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    if "/" in name or not path.is_file():
        raise CheckpointError(f"no shipped weights called {name!r}; shipped: {', '.join(shipped_weights())}")
    return path


def resolve_weights(source: Path | str | None, which: str = "last") -> Path:
    """A run folder -> its `<which>.safetensors`; a file -> itself; the name of shipped weights ("resnet56") -> their
    file, when no file or folder of that name is here; None -> the shipped default weights."""
    if source is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise CheckpointError(f"the shipped default weights are missing ({DEFAULT_WEIGHTS}); pass --weights")
        return DEFAULT_WEIGHTS
    source = Path(source)
    if source.is_dir():
        path = run_folder.checkpoint_path(source, which)
        if not path.is_file():
            raise CheckpointError(f"{source} has no {which}.safetensors (is it a run folder?)")
        return path
    if source.is_file():
        return source
    if source.name == str(source) and source.suffix == "" and str(source) in shipped_weights():
        return shipped_path(str(source))
    raise CheckpointError(
        f"no run folder or weights file at {source}, and no shipped weights of that name "
        f"(shipped: {', '.join(shipped_weights())})"
    )


def state_from_tensors(tensors: dict[str, torch.Tensor], prefer_ema: bool = True) -> tuple[dict, bool]:
    """The model state dict inside a checkpoint (EMA weights when present and preferred) or a plain weights file."""
    if prefer_ema and any(k.startswith("ema.") for k in tensors):
        return split_prefix(tensors, "ema"), True
    if any(k.startswith("model.") for k in tensors):
        return split_prefix(tensors, "model"), False
    return clean_state_dict(tensors), False


def recorded_calibration(metadata: dict) -> dict:
    """The calibration a checkpoint (`calibration`) or a shipped file's model card (`card.calibration`) records."""
    return metadata.get("calibration") or metadata.get("card", {}).get("calibration") or {}


TEMPERATURES = (1e-2, 1e2)  # a fitted temperature outside this range calibrates nothing: the file is damaged
STDS = (1e-4, 1e3)  # input standard deviations a normalisation can have (pixels in [0, 1])


def refuse_impossible(path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """CheckpointError for values no trained weights hold, which would answer with NaN or false certainty rather
    than an error of their own: NaN or infinite tensors, negative batch-norm variances, a temperature or an input
    standard deviation outside any plausible range."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values; refused")
        if name.endswith("running_var") and bool((tensor < 0).any()):
            raise CheckpointError(f"{path}: tensor {name} holds negative variances; refused")
    temperature = recorded_calibration(metadata).get("temperature", NO_TEMPERATURE)
    low, high = TEMPERATURES
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not low <= temperature <= high:
        raise CheckpointError(f"{path}: calibration temperature must be in [{low:g}, {high:g}], got {temperature!r}")
    try:
        normalization = recorded_normalization(metadata)
    except ConfigError as error:
        raise CheckpointError(f"{path}: {error}") from None
    if not all(STDS[0] <= std <= STDS[1] for std in normalization.std):
        raise CheckpointError(
            f"{path}: normalization std must be in [{STDS[0]:g}, {STDS[1]:g}], got {normalization.std}"
        )


def _listed(names: list[str], shown: int = 4) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def state_mismatch(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor]) -> str:
    """What keeps `given` from loading into a model whose state dict is `expected`, in words ("" when it fits):
    missing and unexpected tensor names and differing shapes, a few of each, then a count."""
    missing = [name for name in expected if name not in given]
    unexpected = [name for name in given if name not in expected]
    shapes = [
        f"{name} {tuple(given[name].shape)} (the model's {tuple(tensor.shape)})"
        for name, tensor in expected.items()
        if name in given and given[name].shape != tensor.shape
    ]
    parts = [
        f"{label} {_listed(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("shape of", shapes))
        if names
    ]
    return "; ".join(parts)


def load_model(
    source: Path | str, which: str = "last", *, model_name: str | None = None, model_options: dict | None = None,
    prefer_ema: bool = True, device: torch.device | str = "auto", precision: str = "auto", threads: int = 0,
) -> LoadedModel:
    """The model of a run folder or weights file, in eval mode, with the runtime it is to run in: `device` (auto:
    CUDA when available) and `precision` (auto: as the weights were tested where this machine runs that natively, see
    resnet_cifar.runtime), resolved here once."""
    path = resolve_weights(source, which)
    tensors, metadata = load_checkpoint(path)
    refuse_impossible(path, tensors, metadata)
    name, options = model_of(path, metadata, model_name, model_options)
    state, ema_weights = state_from_tensors(tensors, prefer_ema)
    model = fitted_model(path, name, options, state)
    runtime = choose_runtime(device, precision, threads, recorded=recorded_precision(metadata))
    config = recorded_config(path, metadata)
    loaded = LoadedModel(model.eval(), name, options, path, runtime, metadata, ema_weights, config)
    memory_format = torch.channels_last if loaded.channels_last else torch.contiguous_format
    loaded.model.to(runtime.device, memory_format=memory_format)
    return loaded


def model_of(path: Path, metadata: dict, model_name: str | None, model_options: dict | None) -> tuple[str, dict]:
    """The model the weights are for: the file's own; a name and options given alongside only for a file that does
    not record them (given ones that contradict the file's are refused: the weights would compute something else)."""
    name = model_name or metadata.get("model")
    if name is None:
        raise ConfigError(
            f"{path} carries no model name (plain weights without metadata): pass --model NAME (and --model-options "
            "if it was built with other than the defaults), or model_name= in Python; `resnet-cifar models` lists "
            "the names"
        )
    recorded = metadata.get("model_options")
    options = dict((recorded or {}) if model_options is None else model_options)
    for given, own, what in ((model_name, metadata.get("model"), "model"), (model_options, recorded, "model options")):
        if given is not None and own is not None and given != own:
            raise ConfigError(f"{path} holds {what} {own!r}; {given!r} contradicts it (leave it out: the file says)")
    return name, options


def fitted_model(path: Path, name: str, options: dict, state: dict[str, torch.Tensor]) -> nn.Module:
    """The model with `state` loaded, built only once its shapes are known to fit the tensors (built on PyTorch's
    meta device first, which allocates nothing: options naming a model of gigabytes cost nothing to refuse)."""
    try:
        with torch.device("meta"):
            expected = create_model(name, **options).state_dict()
    except ConfigError:
        raise
    except (TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: model {name} cannot be built with {options}: {error}") from None
    mismatch = state_mismatch(expected, state)
    if mismatch:
        raise CheckpointError(f"{path} does not fit model {name}: {mismatch}")
    model = create_model(name, **options)
    model.load_state_dict(state)
    return model


def recorded_config(path: Path, metadata: dict) -> TrainConfig | None:
    """The configuration a checkpoint (`config`) or a shipped file's model card (`card.config`) records, typed."""
    recorded = metadata.get("config") or metadata.get("card", {}).get("config")
    if recorded is None:
        return None
    try:
        return config_from_record(recorded)
    except ConfigError as error:
        raise CheckpointError(f"{path}: its recorded configuration does not read ({error})") from None


def load_pretrained(name: str = DEFAULT_NAME, **options) -> LoadedModel:
    """The shipped weights called `name` (`shipped_weights()` lists them: "robust", "resnet20", "resnet56", ...),
    loaded as `load_model` loads any weights (`options`: device, precision, threads): the model in eval mode with the
    normalisation and the validation-fitted temperature it was trained and calibrated with. Nothing is downloaded."""
    return load_model(shipped_path(name), **options)


class Pretrained(nn.Module):
    """Shipped weights with their input normalisation inside: call it on float images scaled to [0, 1] (as
    torchvision's ToTensor gives them) or on uint8 pixels, N x 3 x 32 x 32, for logits; `probabilities` divides them
    by the temperature fitted on the validation split first. What `torch.hub.load(..., pretrained=True)` returns."""

    def __init__(self, loaded: LoadedModel):
        super().__init__()
        self.net = loaded.model
        norm = loaded.normalization
        self.register_buffer("mean", torch.tensor(norm.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(norm.std).view(1, 3, 1, 1), persistent=False)
        self.temperature = loaded.temperature
        self.card = loaded.metadata.get("card", {})

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of float images in [0, 1] or uint8 pixels (anything else is refused, not misread)."""
        from resnet_cifar.inference.images import as_unit_floats

        return self.net((as_unit_floats(images) - self.mean) / self.std)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(images) / self.temperature, dim=1)
