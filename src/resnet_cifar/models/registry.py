"""Models built by name (`create_model("resnet56")`, `list_models("plain*")`); each builder registers itself with the
metadata the tests and the model table need, so both cover every variant."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from resnet_cifar.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable[..., nn.Module]
    family: str  # "cifar-resnet", "plain", "preact-cifar", "resnet", "preact-resnet", "fast"
    depth: int  # weighted layers on the longest path (convs + fc), the number in the name
    paper_params_m: float | None = None  # parameters in millions as printed in the paper (None: not in a paper)
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, *, family: str, depth: int, paper_params_m: float | None = None, description: str = ""
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that adds a builder function to the registry under `name`."""

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, builder, family, depth, paper_params_m, description or builder.__doc__ or "")
        return builder

    return decorator


def model_spec(name: str) -> ModelSpec:
    """The registry entry for `name`; unknown names raise ConfigError with a did-you-mean suggestion."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "; see `resnet-cifar models`"
        raise ConfigError(f"unknown model {name!r}{hint}") from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model. Keyword arguments go to its builder (e.g. num_classes, shortcut, norm)."""
    return model_spec(name).builder(**kwargs)


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    """Registered model names in registration order, optionally filtered by a glob pattern and/or a family."""
    return [
        name
        for name, spec in _REGISTRY.items()
        if (pattern is None or fnmatch.fnmatch(name, pattern)) and (family is None or spec.family == family)
    ]
