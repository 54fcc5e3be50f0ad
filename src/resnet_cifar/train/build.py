"""The model and the optimizer of a run, built from its config."""

from __future__ import annotations

import importlib
import sys
import threading

import torch
from torch import nn

from resnet_cifar.config import TrainConfig
from resnet_cifar.errors import ConfigError
from resnet_cifar.models import create_model
from resnet_cifar.train.muon import MuonWithSGD


def build_model(config: TrainConfig) -> nn.Module:
    """The run's model, built once; whatever its builder raises on the options' values is the user's input."""
    try:
        return create_model(config.model, **config.model_options)
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(f"model_options for {config.model}: {error}") from None


def start_importing_optimizer_machinery() -> threading.Thread | None:
    """Import torch._dynamo on a background thread, now. Every torch.optim.Optimizer imports it when it is first
    built (its methods are wrapped to opt out of compilation): 1.3 s of a 2-core Zen 4, paid while nothing else
    runs. Started just before the data loads and the whitening is fitted (C code that leaves the interpreter free),
    it is ready by the time `build_optimizer` needs it; that import then simply waits for this one to finish.
    Call it after the caller's own imports are done, so the two threads never import the same modules in turn."""
    if "torch._dynamo" in sys.modules:
        return None
    thread = threading.Thread(target=importlib.import_module, args=("torch._dynamo",), daemon=True)
    thread.start()
    return thread


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (or Muon for the convolution filters) over parameter groups; each group's `lr_scale` multiplies the
    scheduled lr (the loop applies it)."""
    norm_biases = _norm_biases(model) if config.bias_lr_scale != 1 else set()
    muon = config.optimizer == "muon"
    decay, no_decay, scaled, filters = [], [], [], []
    for parameter in model.parameters():
        if muon and parameter.ndim == 4 and parameter.requires_grad:
            filters.append(parameter)
        elif id(parameter) in norm_biases:
            scaled.append(parameter)
        # Norm scales/shifts and biases are the 1-d parameters.
        elif config.decay_norm_and_bias or parameter.ndim > 1:
            decay.append(parameter)
        else:
            no_decay.append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay, "lr_scale": 1.0}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0})
    if scaled:
        # airbench's rule: the decay per step (lr x weight_decay) stays what it would be at the unscaled lr
        wd = config.weight_decay / config.bias_lr_scale if config.decay_norm_and_bias else 0.0
        groups.append({"params": scaled, "weight_decay": wd, "lr_scale": config.bias_lr_scale})
    nesterov = config.nesterov and config.momentum > 0
    if not muon:
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=nesterov)
    groups.append(
        {
            "params": filters,
            "orthogonalize": True,
            "momentum": config.muon_momentum,
            "nesterov": True,
            "lr_scale": config.muon_lr / config.lr,
        }
    )
    return MuonWithSGD([g for g in groups if g["params"]], lr=config.lr, momentum=config.momentum, nesterov=nesterov)


def _norm_biases(model: nn.Module) -> set[int]:
    """ids of the batch norms' shift parameters."""
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)
    return {id(m.bias) for m in model.modules() if isinstance(m, norms) and m.bias is not None}
