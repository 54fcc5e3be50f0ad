"""corruptions.png: one test image under every corruption of the benchmark at severities 1, 3 and 5."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from resnet_cifar.data.corruptions import CORRUPTIONS, corrupt
from resnet_cifar.viz.pictures import save_png, upsample

SHOWN = (1, 3, 5)


def corruption_examples_figure(
    image: torch.Tensor, corruptions: tuple[str, ...] = CORRUPTIONS, seed: int = 0
) -> Figure:
    """Columns: the clean image, then each corruption (as the benchmark draws it with `seed`) at SHOWN severities."""
    columns = len(corruptions) + 1
    fig = Figure(figsize=(1.25 * columns, 1.35 * len(SHOWN) + 0.6), dpi=100)
    axes = fig.subplots(len(SHOWN), columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    axes[0, 0].imshow(upsample(image))
    axes[0, 0].set_title("clean", fontsize=8)
    for column, name in enumerate(corruptions, 1):
        for row, severity in enumerate(SHOWN):
            axes[row, column].imshow(upsample(corrupt(image[None], name, severity, seed)[0]))
            if row == 0:
                axes[row, column].set_title(name.replace("_", " "), fontsize=8)
    for row, severity in enumerate(SHOWN):
        axes[row, 0].text(-0.1, 0.5, f"severity {severity}", transform=axes[row, 0].transAxes, ha="right",
                          va="center", fontsize=8)  # fmt: skip
    fig.suptitle("The corruption benchmark: one test image at severities 1, 3 and 5 (rows)", fontsize=11)
    fig.tight_layout()
    return fig


def write_corruption_examples(image: torch.Tensor, path: Path, corruptions: tuple[str, ...], seed: int) -> Path:
    return save_png(corruption_examples_figure(image, corruptions, seed), path, fast=False)
