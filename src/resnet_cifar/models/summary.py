"""Parameter and compute counts for the model table (`resnet-cifar models`, `python -m resnet_cifar.models`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from resnet_cifar.models.registry import create_model, list_models, model_spec


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Registered models built with other than their defaults that the README names, listed under their own rows.
VARIANTS = {
    "fastnet 32-64-128 (make train)": (
        "fastnet",
        # configs/fast80.yaml
        {"widths": [32, 64, 128], "blocks": [1, 0, 1], "stem_width": 24, "stem": "whiten", "train_stem_bias": False},
    ),
    "fastnet 64-256-256 (cpu94)": (
        "fastnet",
        # configs/cpu94.yaml (the options that change the parameters: one gate per residual block)
        {
            "widths": [64, 256, 256], "blocks": [1, 1, 1], "residual_convs": 1, "stem_width": 24, "stem": "whiten",
            "train_stem_bias": False, "residual_gate": True,
        },
    ),
}


@torch.no_grad()
def count_macs(model: nn.Module, image_size: int = 32, in_channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass on one image, counted over convolutions and linear layers.

    Papers call this number "FLOPs" (He et al. 2015 give ResNet-34 3.6 billion "FLOPs (multiply-adds)").
    Normalisation, activations and additions are left out, as there.
    """
    macs = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        macs += output[0].numel() * kernel

    def linear_hook(module: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        macs += output[0].numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, in_channels, image_size, image_size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return macs


def model_table(names: list[str] | None = None, variants: bool = True) -> list[dict]:
    """One row per model (and per named variant of one of `names`): name, family, depth, parameters, the paper's
    count, forward MACs and FLOPs per image. Builds and runs every model (seconds): `cached_model_table` reads the
    same rows from the file shipped with the package."""
    names = names or list_models()
    entries = []
    for name in names:  # each model, then its named variants
        entries.append((name, name, {}))
        if variants:
            entries += [(label, name, options) for label, (base, options) in VARIANTS.items() if base == name]
    rows = []
    for label, name, options in entries:
        spec = model_spec(name)
        model = create_model(name, **options)
        macs = count_macs(model)
        rows.append(
            {
                "name": label, "model": name, "family": spec.family, "depth": spec.depth,
                "params": count_parameters(model), "paper_params_m": spec.paper_params_m, "mmacs": macs / 1e6,
                "mflops": 2 * macs / 1e6,
            }
        )
    return rows


CACHE = Path(__file__).with_name("table.json")  # model_table() as shipped; tests/test_models.py keeps it current


def cached_model_table(names: list[str] | None = None) -> list[dict]:
    """model_table(names) from the shipped file (instant), computed where the file lacks a model."""
    names = names or list_models()
    rows = json.loads(CACHE.read_text()) if CACHE.is_file() else []
    kept = [row for row in rows if row["model"] in names]
    if {row["model"] for row in kept} != set(names):
        return model_table(names)
    return kept


def format_table(rows: list[dict]) -> str:
    """Markdown table. MFLOPs counts a multiply-add as 2 operations; papers' "FLOPs" are the MMACs column."""
    lines = [
        "| model | family | depth | params | paper | MMACs | MFLOPs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        paper = f"{row['paper_params_m']}M" if row["paper_params_m"] else ""
        lines.append(
            f"| {row['name']} | {row['family']} | {row['depth']} | {row['params'] / 1e6:.2f}M | {paper} "
            f"| {row['mmacs']:,.1f} | {row['mflops']:,.1f} |"
        )
    return "\n".join(lines)
