"""Gradient flow in plain vs residual nets, with and without batch norm, at initialisation and after K steps: on one
fixed batch, the gradient norm of every convolution's weight and of the stem's and every block's output, input to
output (vanishing gradients fall towards the input, exploding ones grow)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cifar.data.augment import Augmentation, normalize
from resnet_cifar.data.cifar10 import load_split
from resnet_cifar.data.locate import find_dataset
from resnet_cifar.data.splits import balanced_subset
from resnet_cifar.experiments.settings import GradientFlowSettings
from resnet_cifar.experiments.study_reports import NetProgress, write_report
from resnet_cifar.models import create_model
from resnet_cifar.seeding import GRADIENT_FLOW_STEPS, derive_seed
from resnet_cifar.train.progress import RunProgress

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Measurement:
    loss: float
    conv_names: list[str]
    conv_grad_norms: list[float]  # ||dL/dW|| per convolution, input to output
    block_names: list[str]
    activation_grad_norms: list[float]  # ||dL/da|| per block output (stem first), input to output
    activation_rms: list[float]  # forward signal size per block output

    @property
    def first_to_last(self) -> float:
        """Gradient norm of the first convolution over that of the last one (<1: smaller near the input)."""
        return self.conv_grad_norms[0] / self.conv_grad_norms[-1] if self.conv_grad_norms[-1] else float("inf")


def measure(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn: LossFn = F.cross_entropy,
    blocks: list[nn.Module] | None = None,
) -> Measurement:
    """One forward/backward pass on a fixed batch; gradients are read, nothing is updated.

    Convolutions are listed in the order they run (forward hooks), so shortcuts' projections appear where they
    are used. `blocks` defaults to the model's stem followed by its `blocks()`.
    """
    blocks = blocks if blocks is not None else [model.stem, *model.blocks()]
    conv_order: list[tuple[str, nn.Conv2d]] = []
    names = {module: name for name, module in model.named_modules()}
    activations: list[torch.Tensor] = []
    handles = []

    def on_conv(module, _inputs, _output):
        if all(module is not m for _, m in conv_order):
            conv_order.append((names[module], module))

    def on_block(_module, _inputs, output):
        output.retain_grad()
        activations.append(output)

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(on_conv))
    handles += [block.register_forward_hook(on_block) for block in blocks]
    model.zero_grad(set_to_none=True)
    try:
        loss = loss_fn(model(images), labels)
        loss.backward()
    finally:
        for handle in handles:
            handle.remove()
    return Measurement(
        loss=loss.item(), conv_names=[name for name, _ in conv_order],
        conv_grad_norms=[float(conv.weight.grad.norm()) for _, conv in conv_order],
        block_names=[names[b] for b in blocks], activation_grad_norms=[float(a.grad.norm()) for a in activations],
        activation_rms=[float(a.detach().pow(2).mean().sqrt()) for a in activations],
    )


def net_names(settings: GradientFlowSettings) -> list[tuple[str, str, str]]:
    """(label, registry name, norm) for every net of the study."""
    nets = []
    for norm in settings.norms:
        for kind in ("plain", "resnet"):
            for depth in settings.depths:
                label = f"{kind}{depth}" + ("" if norm == "bn" else "-nobn")
                nets.append((label, f"{kind}{depth}", norm))
    return nets


def train_steps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: GradientFlowSettings) -> bool:
    """K SGD steps on augmented batches drawn with a fixed seed. Returns False if the loss stopped being finite."""
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9, weight_decay=5e-4)
    augment = Augmentation(crop_padding=4)
    model.train()
    progress = RunProgress("auto", settings.steps, 1)
    progress.start_epoch(1, settings.steps)
    started = time.perf_counter()
    for step in range(settings.steps):
        generator = torch.Generator().manual_seed(derive_seed(settings.seed, GRADIENT_FLOW_STEPS, step))
        index = torch.randint(0, len(labels), (settings.batch_size,), generator=generator)
        logits = model(augment(images[index], generator))
        loss = F.cross_entropy(logits, labels[index])
        if not torch.isfinite(loss):
            progress.end_epoch("")
            return False
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        hits = (logits.argmax(1) == labels[index]).double().mean()
        seen = (step + 1) * settings.batch_size

        def stats(loss=loss, hits=hits, seen=seen) -> tuple[float, float, float]:
            return loss.item(), hits.item(), seen / (time.perf_counter() - started)

        progress.update(step + 1, stats)
    progress.end_epoch(f"  {settings.steps} steps in {time.perf_counter() - started:.0f}s")
    return True


def run_gradient_flow(settings: GradientFlowSettings, log: Callable[[str], None] = print) -> dict:
    """Measure every net at initialisation and after K steps. Returns the JSON-ready results."""
    dataset = find_dataset(settings.data_dir)
    train = load_split(dataset.folder, "train", fmt=dataset.format)
    pool = balanced_subset(train.labels, settings.train_pool, settings.seed)
    pool_images, pool_labels = train.images[pool], train.labels[pool]
    fixed = balanced_subset(pool_labels, settings.batch_size - settings.batch_size % 10, settings.seed + 1)
    batch, batch_labels = normalize(pool_images[fixed]), pool_labels[fixed]
    results = {"settings": asdict(settings), "precision": "fp32", "nets": {}}  # measured in fp32
    nets = net_names(settings)
    counter = NetProgress(len(nets), log)
    for label, name, norm in nets:
        counter.start(f"{label}: measure, train {settings.steps} steps, measure again")
        started = time.perf_counter()
        torch.manual_seed(settings.seed)
        model = create_model(name, norm=norm)
        model.train()  # batch statistics, as in training
        at_init = measure(model, batch, batch_labels)
        finite = train_steps(model, pool_images, pool_labels, settings)
        after = measure(model, batch, batch_labels)
        results["nets"][label] = {
            "model": name, "norm": norm, "trained_steps_finite": finite,
            "init": asdict(at_init) | {"first_to_last": at_init.first_to_last},
            "trained": asdict(after) | {"first_to_last": after.first_to_last},
        }
        log(
            f"{label:<16} first/last conv grad norm: init {at_init.first_to_last:10.3g}   "
            f"after {settings.steps} steps {after.first_to_last:10.3g}   ({time.perf_counter() - started:.0f}s)"
        )
        counter.done()
    return results


def summary_lines(results: dict) -> list[str]:
    steps = results["settings"]["steps"]
    lines = [f"{'net':<16} {'layers':>6} {'first/last (init)':>18} {f'first/last ({steps} steps)':>22}"]
    for label, net in results["nets"].items():
        lines.append(
            f"{label:<16} {len(net['init']['conv_grad_norms']):>6} {net['init']['first_to_last']:>18.3g} "
            f"{net['trained']['first_to_last']:>22.3g}"
        )
    return lines


def write_gradient_flow(results: dict, out: Path) -> list[Path]:
    from resnet_cifar.viz.study_plots import plot_gradient_flow

    return write_report(out, "gradient_flow.json", results, "nets", pictures={"gradient_flow.png": plot_gradient_flow})
