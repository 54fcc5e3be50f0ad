"""The model and the optimizer of a run, built from its config."""

from __future__ import annotations

import torch
from torch import nn

from resnet_cifar.errors import ConfigError
from resnet_cifar.models import create_model
from resnet_cifar.train.config import TrainConfig


def build_model(config: TrainConfig) -> nn.Module:
    try:
        return create_model(config.model, **config.model_options)
    except TypeError as error:
        raise ConfigError(f"model_options for {config.model}: {error}") from None


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.SGD:
    decay, no_decay = [], []
    for parameter in model.parameters():
        # Norm scales/shifts and biases are the 1-d parameters.
        (decay if config.decay_norm_and_bias or parameter.ndim > 1 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0
    )
