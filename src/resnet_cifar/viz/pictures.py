"""The three pictures of a run: predictions on test images, training curves, confusion matrix."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.files import atomic_write_bytes

RIGHT, WRONG = "#1a7f37", "#cf222e"


def choose_examples(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """`per_class` images of every class, drawn with `seed` (the same picture every time for the same seed),
    interleaved so each row of the grid mixes classes."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls in range(int(labels.max()) + 1):
        members = (labels == cls).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    stacked = torch.stack(chosen, dim=1)  # per_class x classes
    return stacked.flatten()


def upsample(image: torch.Tensor, size: int = 128) -> np.ndarray:
    """3 x 32 x 32 uint8 -> size x size x 3, bicubic, so a 32-pixel image is easy to see."""
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    return np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC))


def inference_grid(images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, path: Path, **options) -> Path:
    """inference.png: see `inference_figure`."""
    return save_png(inference_figure(images, labels, logits, **options), path)


def save_png(figure: Figure, path: Path, *, fast: bool = True) -> Path:
    """The figure as a PNG written whole (files.atomic_write_bytes: never half a picture, never over a device or a
    pipe). `fast`: zlib level 1, ~20% larger than matplotlib's level 6 in half the encoding time, which every `make
    train` waits for."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", pil_kwargs={"compress_level": 1} if fast else None)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return path


def warm_up() -> None:
    """Draw a tiny figure with text and a legend into memory: matplotlib loads its fonts and renderers on first use,
    a part of a second a run can spend while its test pass computes rather than after it."""
    figure = Figure(figsize=(1, 1), dpi=20)
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], label="x")
    axes.legend()
    axes.set_title("warm-up")
    figure.savefig(io.BytesIO(), format="png")


CELL_W, CELL_H, TILE, CAPTION = 190, 200, 128, 52  # pixels of one grid cell, its image and its caption band
HEADING = 45  # pixels above the grid for the figure's title


def inference_figure(
    images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, *, per_class: int = 4, columns: int = 8,
    seed: int = 0, title: str | None = None,
) -> Figure:
    """A grid of test images captioned with predicted class, confidence and true class; mistakes in red. One mosaic
    image placed pixel for pixel, not one axes per image: laying out and drawing 40 axes would cost most of its time."""
    index = choose_examples(labels, per_class, seed)
    probabilities = logits[index].float().softmax(dim=1)
    confidence, predicted = probabilities.max(dim=1)
    rows = -(-len(index) // columns)
    width, height = columns * CELL_W, rows * CELL_H
    mosaic = np.full((height, width, 3), 255, dtype=np.uint8)
    fig = Figure(figsize=(width / 100, (height + HEADING) / 100), dpi=100)
    for k, (i, pred, conf) in enumerate(zip(index.tolist(), predicted.tolist(), confidence.tolist(), strict=True)):
        true = int(labels[i])
        ok = pred == true
        top, left = (k // columns) * CELL_H + CAPTION, (k % columns) * CELL_W + (CELL_W - TILE) // 2
        border = 1 if ok else 3
        colour = np.array([int(c, 16) for c in ((RIGHT if ok else WRONG)[j : j + 2] for j in (1, 3, 5))])
        mosaic[top - border : top + TILE + border, left - border : left + TILE + border] = colour
        mosaic[top : top + TILE, left : left + TILE] = upsample(images[i], TILE)
        fig.text(
            (left + TILE / 2) / width, (height - top + border + 4) / (height + HEADING),
            f"{CLASSES[pred]} {conf:.0%}\ntrue: {CLASSES[true]}", ha="center", va="bottom", fontsize=9,
            color=RIGHT if ok else WRONG, fontweight="normal" if ok else "bold",
        )
    fig.figimage(mosaic, origin="upper")  # at the bottom left, pixel for pixel: no resampling
    correct = int((predicted == labels[index]).sum())
    heading = title or "Predictions on CIFAR-10 test images"
    fig.suptitle(f"{heading} ({correct}/{len(index)} correct shown; mistakes in red)", fontsize=12)
    return fig


def training_curves_figure(rows: list[dict], title: str = "", label_smoothing: float = 0.0) -> Figure:
    """Loss and accuracy per epoch, training and validation. The training loss is what the optimiser minimised: on
    augmented batches and, with label smoothing, against smoothed targets, whose floor is well above 0, so the
    legend says so (a smoothed 1.2 next to a validation 0.66 is not a bug)."""
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(11, 4.2), dpi=100)
    loss_ax, acc_ax = fig.subplots(1, 2)
    smoothing = f", label smoothing {label_smoothing:g}" if label_smoothing else ""
    for ax, key, label in ((loss_ax, "loss", "loss"), (acc_ax, "acc", "accuracy")):
        train_label = f"train (augmented{smoothing})" if key == "loss" else "train (augmented)"
        ax.plot(epochs, [r[f"train_{key}"] for r in rows], marker="o", ms=3, label=train_label)
        val = [(r["epoch"], r[f"val_{key}"]) for r in rows if r[f"val_{key}"] is not None]
        if val:
            ax.plot(
                *zip(*val, strict=True), marker="s", ms=3,
                label="validation" + (" (plain cross-entropy)" if key == "loss" and smoothing else ""),
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    loss_ax.set_title("loss")
    acc_ax.set_title("accuracy")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_curves(rows: list[dict], path: Path, title: str = "", label_smoothing: float = 0.0) -> Path:
    return save_png(training_curves_figure(rows, title, label_smoothing), path)


def confusion_figure(confusion: list[list[int]] | torch.Tensor, which: str = "") -> Figure:
    """Counts of (true, predicted) pairs with the class names on both axes; `which` says whose predictions (weights
    and test-time augmentation) in the title."""
    matrix = np.asarray(confusion)
    fig = Figure(figsize=(8, 7), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    threshold = matrix.max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(
            col, row, str(count), ha="center", va="center", fontsize=8, color="white" if count > threshold else "black"
        )
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"Confusion matrix on the test set{': ' + which if which else ''}\n(accuracy {accuracy:.2%})")
    fig.tight_layout()
    return fig


def confusion_picture(confusion: list[list[int]] | torch.Tensor, path: Path, which: str = "") -> Path:
    return save_png(confusion_figure(confusion, which), path)
