"""Everything a run trains with, built from its config and resolved runtime: data, batch stream, model, optimizer,
moving average and schedule (`build_run`)."""

from __future__ import annotations

import importlib
import math
import sys
import threading
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from resnet_cifar.config import TrainConfig
from resnet_cifar.data.augment import normalize
from resnet_cifar.errors import ConfigError
from resnet_cifar.models import create_model
from resnet_cifar.runtime import Runtime, enable_determinism, let_cudnn_choose_kernels
from resnet_cifar.seeding import BATCH_STREAM, WHITENING_SAMPLE, derive_seed
from resnet_cifar.train import distributed
from resnet_cifar.train.batches import BatchStream, TrainingData, augmentation_of, prepare_data
from resnet_cifar.train.ema import EMA
from resnet_cifar.train.muon import MuonWithSGD
from resnet_cifar.train.schedule import Schedule, build_schedule


@dataclass
class RunParts:
    """What a run trains with. `model` holds the weights that are saved; `train_model` is what steps call (the model
    wrapped by DDP or torch.compile when they are on); `timings` says where the set-up's seconds went."""

    data: TrainingData
    stream: BatchStream
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    ema: EMA | None
    schedule: Schedule
    total_steps: int
    memory_format: torch.memory_format
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def steps_per_epoch(self) -> int:
        return self.stream.steps_per_epoch

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated, tested and shipped: the moving average when it is on."""
        return self.ema.model if self.ema is not None else self.model


def build_run(config: TrainConfig, runtime: Runtime, dist: distributed.DistInfo) -> RunParts:
    """Seed, build the model (first: bad option values fail before any data is read), read the data, fit layers
    initialised from it, and build the optimizer around the model on its device."""
    if config.deterministic:
        enable_determinism(runtime.device)
    else:
        let_cudnn_choose_kernels(runtime.device)
    torch.manual_seed(config.seed)
    model = build_model(config)
    start_importing_optimizer_machinery()
    started = time.perf_counter()
    data = _data_in_rank_order(config, dist)
    timings = {"data_s": time.perf_counter() - started}
    started = time.perf_counter()
    stream = batch_stream(config, data, runtime.device, dist)
    if config.accumulate > stream.per_rank:
        raise ConfigError(f"accumulate: {config.accumulate} micro-batches of a {stream.per_rank}-image batch")
    total_steps = config.steps or max(1, round(config.epochs * stream.steps_per_epoch))
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    init_from_data(model, data, config.seed)
    model = model.to(runtime.device, memory_format=memory_format)
    if dist.enabled and config.sync_bn:
        model = distributed.convert_sync_batchnorm(model, runtime.device.type)
    optimizer = build_optimizer(config, model)
    ema = EMA(model, config.ema) if config.ema > 0 else None
    schedule = build_schedule(config, total_steps, stream.steps_per_epoch)
    parts = RunParts(data, stream, model, _wrap(model, config, runtime, dist), optimizer, ema, schedule, total_steps,
                     memory_format, timings)  # fmt: skip
    timings["setup_s"] = time.perf_counter() - started
    return parts


def batch_stream(config: TrainConfig, data: TrainingData, device: torch.device, dist) -> BatchStream:
    return BatchStream(
        data.train_images.to(device),  # uint8: 150 MB for all 50,000 images
        data.train_labels.to(device),
        augmentation_of(config),
        config.batch_size,
        derive_seed(config.seed, BATCH_STREAM),
        dist.rank,
        dist.world_size,
        config.alternate_flips,
    )


def _data_in_rank_order(config: TrainConfig, dist: distributed.DistInfo) -> TrainingData:
    """Rank 0 first, so that only one process ever downloads or extracts the dataset."""
    if not dist.is_main:
        distributed.barrier(dist)
    data = prepare_data(config)
    if dist.is_main:
        distributed.barrier(dist)
    return data


def init_from_data(model: nn.Module, data: TrainingData, seed: int) -> None:
    """Layers initialised from the training images (a patch-whitening stem), from a fixed sample."""
    stem = getattr(model, "stem", None)
    if hasattr(stem, "whiten_"):
        generator = torch.Generator().manual_seed(derive_seed(seed, WHITENING_SAMPLE))
        sample = torch.randperm(len(data.train_labels), generator=generator)[:5000]
        stem.whiten_(normalize(data.train_images[sample]))


def _wrap(model: nn.Module, config: TrainConfig, runtime: Runtime, dist: distributed.DistInfo) -> nn.Module:
    if dist.enabled:
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        model = torch.compile(model)
    return model


def build_model(config: TrainConfig) -> nn.Module:
    """The run's model, built once; whatever its builder raises on the options' values is the user's input."""
    try:
        return create_model(config.model, **config.model_options)
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError(f"model_options for {config.model}: {error}") from None


def start_importing_optimizer_machinery() -> threading.Thread | None:
    """Import torch._dynamo on a background thread, now: every torch.optim.Optimizer imports it when it is first
    built (its methods are wrapped to opt out of compilation), about a second paid while nothing else runs. Started
    before the data loads and the whitening is fitted (C code that leaves the interpreter free), it is ready by the
    time `build_optimizer` needs it. Called after the caller's own imports, so the two threads never import the same
    modules in turn."""
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
        elif config.decay_norm_and_bias or parameter.ndim > 1:  # norm scales, shifts and biases are the 1-d ones
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
    muon_group = {"params": filters, "orthogonalize": True, "momentum": config.muon_momentum, "nesterov": True,
                  "lr_scale": config.muon_lr / config.lr}  # fmt: skip
    groups.append(muon_group)
    return MuonWithSGD([g for g in groups if g["params"]], lr=config.lr, momentum=config.momentum, nesterov=nesterov)


def _norm_biases(model: nn.Module) -> set[int]:
    """ids of the batch norms' shift parameters."""
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm)
    return {id(m.bias) for m in model.modules() if isinstance(m, norms) and m.bias is not None}
