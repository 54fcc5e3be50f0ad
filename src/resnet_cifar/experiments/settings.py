"""The settings of each experiment, one dataclass each, every field with its help text: the command line is generated
from them. Nothing heavy is imported here, so building the parser stays instant."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from resnet_cifar.errors import ConfigError


def setting(default: Any, help: str, *, flag: bool = True) -> Any:
    """A settings field with its help text; `flag=False` keeps it off the command line (a recipe, say)."""
    metadata = {"help": help, "flag": flag}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class WhereToRun:
    """The settings every experiment shares: where its data is and how many CPU threads it uses."""

    threads: int = setting(0, "CPU threads (0: one per core)")
    data_dir: str | None = setting(None, "CIFAR-10 folder (default: $RESNET_CIFAR_DATA, then ./data)")

    def check_numbers(self) -> None:
        """Every number finite, and every count and size positive (the experiment-specific checks come after)."""
        for spec in fields(self):
            value = getattr(self, spec.name)
            for number in value if isinstance(value, tuple) else (value,):
                if isinstance(number, float) and not math.isfinite(number):
                    raise ConfigError(f"{spec.name}: must be a finite number, got {number}")
                if isinstance(number, int | float) and not isinstance(number, bool) and number < 0:
                    raise ConfigError(f"{spec.name}: must not be negative, got {number}")


def _check_depths(depths) -> None:
    for depth in depths:
        depth = int(depth) if isinstance(depth, str) and depth.isdigit() else depth
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"depths: {depth} is not a CIFAR ResNet depth (6n + 2: 20, 32, 44, 56, 110, ...)")


# --- gradient flow -----------------------------------------------------------------------------------------------


@dataclass
class GradientFlowSettings(WhereToRun):
    depths: tuple[int, ...] = setting((20, 56, 110), "depths of the residual nets and their plain twins")
    norms: tuple[str, ...] = setting(("bn", "none"), "normalisations compared: bn (batch norm) and none")
    batch_size: int = setting(128, "the fixed measurement batch, and the training batch")
    steps: int = setting(100, "K: training steps between the two measurements")
    lr: float = setting(0.02, "SGD learning rate (momentum 0.9, weight decay 5e-4, the same for all nets)")
    grad_clip: float = setting(5.0, "gradient clipping, which keeps the nets without batch norm from diverging")
    train_pool: int = setting(10_000, "training images the K steps are drawn from")
    seed: int = setting(0, "seed for the weights, the batch and the K steps")

    def validate(self) -> None:
        self.check_numbers()
        from resnet_cifar.models.layers import NORMS

        for norm in self.norms:
            if norm not in NORMS:
                raise ConfigError(f"norms: each one of {', '.join(NORMS)}, got {norm!r}")
        if not (self.lr > 0 and self.batch_size >= 10 and self.steps > 0 and self.train_pool >= self.batch_size):
            raise ConfigError("lr, steps must be positive; batch_size at least 10 and at most train_pool")
        _check_depths(self.depths)

    @classmethod
    def quick(cls, **kwargs) -> GradientFlowSettings:
        """Depths 20 and 56 only, 25 steps drawn from 1,000 images: 8 nets."""
        return cls(**{"depths": (20, 56), "steps": 25, "train_pool": 1000, **kwargs})


# --- degradation -----------------------------------------------------------------------------------------------------

DEPTHS = (20, 32, 44, 56)


def _paper_recipe() -> dict:
    """He et al. §4.2 (SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 128, zero-padded crop + flip) with a
    one-cycle schedule in place of the step schedule: linear warm-up over the first quarter from 0.01 to 0.1, then
    linear decay to 0. The step schedule compressed to this budget, which starts at lr 0.1, makes
    ResNet-56 collapse to a constant prediction in its first hundred steps (an independent reference implementation
    does the same), the instability He et al. warm up ResNet-110 for. See the README."""
    return {
        "batch_size": 128, "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4, "schedule": "onecycle",
        "warmup_start": 0.1, "crop_padding": 4, "pad_mode": "zeros", "flip": True, "label_smoothing": 0.0,
        "precision": "auto", "channels_last": True,
    }


@dataclass
class DegradationSettings(WhereToRun):
    depths: tuple[int, ...] = setting(DEPTHS, "depths of the plain and residual nets")
    epochs: float = setting(6, "the budget: epochs of train_size images per net")
    train_size: int = setting(45_000, "class-balanced training images")
    test_images: int = setting(10_000, "test images evaluated after every epoch (the full test set by default)")
    clean_train_sample: int = setting(10_000, "training images for the final clean training error")
    val_size: int = setting(5000, "validation images carved from the training set (validated once, not used here)")
    seed: int = setting(0, "seed of every net's run")
    recipe: dict = field(default_factory=_paper_recipe, metadata={"help": "training options", "flag": False})

    def use_paper_step_schedule(self) -> None:
        """The paper's step schedule compressed to the budget: lr 0.1 from the first step, divided by 10 after 50%
        and 75% of it (the run kept in docs/experiments/paper-step-schedule/)."""
        self.recipe = {
            **self.recipe, "schedule": "step", "milestones": [0.5, 0.75], "milestone_unit": "fraction", "gamma": 0.1,
        }

    def validate(self) -> None:
        self.check_numbers()
        _check_depths(self.depths)
        if not (self.epochs > 0 and self.train_size > 0 and 0 < self.test_images <= 10_000):
            raise ConfigError("epochs and train_size must be positive, test_images from 1 to 10,000")

    @classmethod
    def quick(cls, **kwargs) -> DegradationSettings:
        """A few minutes: 2 epochs of 5,000 images, 2,000 test images."""
        return cls(**{"epochs": 2, "train_size": 5000, "test_images": 2000, "clean_train_sample": 2000, **kwargs})


# --- depth at the paper's scale ---------------------------------------------------------------------------------


@dataclass
class DepthSettings(WhereToRun):
    config: str = setting("configs/paper-resnets.yaml", "the training recipe every net runs (a config YAML)")
    plain_depths: tuple[int, ...] = setting(DEPTHS, "depths of the plain nets (Fig. 6, left)")
    residual_depths: tuple[int, ...] = setting((*DEPTHS, 110), "depths of the ResNets (Fig. 6 right, Table 6)")
    seeds: tuple[int, ...] = setting((0,), "seeds every net is trained with")
    more_seeds: dict = setting({20: [1], 56: [1]}, "further seeds of some ResNets for Table 6, a YAML mapping")
    epochs: float | None = setting(None, "epochs per net (default: the config's)")
    train_size: int | None = setting(None, "class-balanced training images (default: the config's)")
    test_images: int = setting(10_000, "test images evaluated after every epoch (a class-balanced sample when fewer)")

    @classmethod
    def quick(cls, **kwargs) -> DepthSettings:
        """A few minutes: plain-20 and ResNet-20/32, one seed, 1 epoch of 2,000 images, 1,000 test images."""
        defaults = {"plain_depths": (20,), "residual_depths": (20, 32), "more_seeds": {}, "epochs": 1}
        return cls(**{**defaults, "train_size": 2000, "test_images": 1000, **kwargs})

    def validate(self) -> None:
        from pathlib import Path

        if not Path(self.config).is_file():
            raise ConfigError(
                f"config: {self.config} is not a file (a training config such as configs/paper-resnets.yaml)"
            )
        self.check_numbers()
        _check_depths((*self.plain_depths, *self.residual_depths, *self.more_seeds))
        if not 0 < self.test_images <= 10_000 or self.test_images % 10:
            raise ConfigError(f"test_images: {self.test_images} is not a multiple of 10 (classes) up to 10,000")


# --- data efficiency -------------------------------------------------------------------------------------------------

SIZES = (500, 1000, 2500, 5000, 10_000, 20_000, 45_000)
KINDS = ("residual", "plain")


def _fast_recipe() -> dict:
    """The fast net's recipe every point trains with (lr 0.6 one-cycle over the step budget, label smoothing 0.2,
    2-pixel reflected crops, flip TTA): the study's own, fixed so that stored points stay comparable."""
    return {
        "batch_size": 128, "lr": 0.6, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "schedule": "onecycle",
        "label_smoothing": 0.2, "crop_padding": 2, "pad_mode": "reflect", "flip": True, "tta": 1,
        "eval_batch_size": 250, "precision": "auto", "channels_last": True,
    }


@dataclass
class DataEfficiencySettings(WhereToRun):
    sizes: tuple[int, ...] = setting(SIZES, "class-balanced training-set sizes (multiples of 10)")
    seeds: tuple[int, ...] = setting((0, 1, 2), "seeds: each draws its own subsets and trains its own nets")
    steps: int = setting(1000, "the fixed budget per point, in SGD steps of 128 images")
    model: str = setting("fastnet", "fastnet or a CIFAR ResNet such as resnet20 (its plain twin is the other net)")
    model_options: dict = setting(
        {"widths": [32, 64, 128], "blocks": [1, 1, 1], "stem_width": 24, "stem": "whiten"},
        "builder options of the model, a YAML mapping",
    )
    test_images: int = setting(10_000, "test images per point (a class-balanced sample when fewer than 10,000)")
    val_size: int = setting(5000, "validation images carved from the training set before the subsets are drawn")
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    recipe: dict = field(default_factory=_fast_recipe, metadata={"help": "training options", "flag": False})

    @classmethod
    def quick(cls, **kwargs) -> DataEfficiencySettings:
        """4 sizes, one seed, 150 steps, 2,000 test images: a few minutes."""
        return cls(**{"sizes": (500, 2500, 10_000, 45_000), "seeds": (0,), "steps": 150, "test_images": 2000, **kwargs})

    def validate(self) -> None:
        self.check_numbers()
        for size in self.sizes:
            if size <= 0 or size % 10 or size > 50_000 - self.val_size:
                raise ConfigError(
                    f"sizes: {size} is not a positive multiple of 10 (classes) of at most {50_000 - self.val_size}"
                )
            if size < self.recipe["batch_size"]:
                raise ConfigError(f"sizes: {size} is smaller than the batch of {self.recipe['batch_size']} images")
        if self.steps <= 0:
            raise ConfigError(f"steps: must be positive, got {self.steps}")
        for kind in KINDS:
            twin(self.model, self.model_options, kind)
        from resnet_cifar.runtime import resolve_device

        resolve_device(self.device)  # an unknown or missing device fails here, before any data is read

    def fingerprint(self) -> dict:
        """What a point's number depends on; a stored point is reused only when this matches."""
        keys = ("steps", "model", "model_options", "recipe", "test_images", "val_size")
        return {key: json.loads(json.dumps(getattr(self, key))) for key in keys}


def twin(model: str, options: dict, kind: str) -> tuple[str, dict]:
    """The (model name, builder options) of the residual net (`kind` "residual") or of its plain twin ("plain")."""
    from resnet_cifar.models.registry import model_spec

    if kind == "residual":
        return model, dict(options)
    spec = model_spec(model)
    if spec.family == "cifar-resnet":
        return f"plain{spec.depth}", dict(options)
    if spec.family == "fast":
        return model, {**options, "residual": False}
    raise ConfigError(f"model: {model!r} has no plain twin here (use a CIFAR ResNet such as resnet20, or fastnet)")
