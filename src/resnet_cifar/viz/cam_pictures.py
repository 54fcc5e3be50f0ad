"""Pictures of class-activation maps: `predict --explain OUT.png` and a run's `inference_cam.png`."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image

from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.inference.explain import Explanation
from resnet_cifar.viz.pictures import RIGHT, WRONG, choose_examples, save_png, upsample

ALPHA = 0.5  # how much of the map covers the image
MAX_ROWS = 48  # predict --explain draws at most this many images (a taller picture is unreadable)


def overlay(image: torch.Tensor, cam: torch.Tensor, size: int = 128) -> np.ndarray:
    """3 x 32 x 32 uint8 image and a 32 x 32 map in [0, 1] -> size x size x 3 uint8: the map in colour over the
    image (blue cold, red hot)."""
    base = upsample(image, size).astype(np.float32) / 255
    heat = Image.fromarray((cam.clamp(0, 1).numpy() * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    colour = colormaps["jet"](np.asarray(heat, dtype=np.float32) / 255)[..., :3]
    blended = ((1 - ALPHA) * base + ALPHA * colour).clip(0, 1)
    return (blended * 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    """An H x W x 3 uint8 array as PNG bytes (for the web page)."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def explanation_figure(images: torch.Tensor, explanation: Explanation, names: list[str]) -> Figure:
    """One row per image: what the network sees (32x32, upscaled), the map of its top class and of the second, and
    its top-5 probabilities."""
    rows = min(len(images), MAX_ROWS)
    fig = Figure(figsize=(10.5, 2.3 * rows + 0.5), dpi=100)
    axes = fig.subplots(rows, 4, squeeze=False, gridspec_kw={"width_ratios": [1, 1, 1, 1.6]})
    for row in range(rows):
        view, first, second, bars = axes[row]
        classes = explanation.classes[row].tolist()
        probabilities = explanation.probabilities[row]
        view.imshow(upsample(images[row]))
        view.set_title(_short(names[row]), fontsize=9)
        for ax, k in ((first, 0), (second, 1)):
            if k < len(classes):
                ax.imshow(overlay(images[row], explanation.maps[row, k]))
                ax.set_title(f"where: {CLASSES[classes[k]]} {float(probabilities[classes[k]]):.0%}", fontsize=9)
        for ax in (view, first, second):
            ax.set_axis_off()
        _top5_bars(bars, probabilities)
    shown = f" (first {rows} of {len(images)})" if rows < len(images) else ""
    fig.suptitle(f"Class-activation maps (Grad-CAM, layer {explanation.layer}){shown}", fontsize=11)
    fig.tight_layout()
    return fig


def _top5_bars(ax, probabilities: torch.Tensor) -> None:
    values, indices = probabilities.topk(min(5, len(probabilities)))
    labels = [CLASSES[i] for i in indices.tolist()][::-1]
    ax.barh(labels, values.tolist()[::-1], color="#4c72b0")
    ax.set_xlim(0, 1)
    ax.tick_params(labelsize=8)
    for y, value in enumerate(values.tolist()[::-1]):
        ax.text(min(value + 0.02, 0.8), y, f"{value:.0%}", va="center", fontsize=8)
    ax.set_title("top 5", fontsize=9)


def _short(name: str, width: int = 22) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


def write_explanations(images: torch.Tensor, explanation: Explanation, names: list[str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_png(explanation_figure(images, explanation, names), path, fast=False)


def cam_grid_figure(
    images: torch.Tensor, labels: torch.Tensor, explanation: Explanation, index: torch.Tensor, *, columns: int = 8,
) -> Figure:
    """The inference grid's images (`index`, explained in that order) with the map of the predicted class over each;
    captioned like inference.png, mistakes in red."""
    rows = -(-len(index) // columns)
    fig = Figure(figsize=(columns * 1.9, rows * 2.25), dpi=100)
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for position, (ax, i) in enumerate(zip(axes.flat, index.tolist(), strict=False)):
        predicted, true = int(explanation.classes[position, 0]), int(labels[i])
        confidence = float(explanation.probabilities[position, predicted])
        ax.imshow(overlay(images[i], explanation.maps[position, 0]))
        ok = predicted == true
        ax.set_title(
            f"{CLASSES[predicted]} {confidence:.0%}\ntrue: {CLASSES[true]}", fontsize=9, color=RIGHT if ok else WRONG,
            fontweight="normal" if ok else "bold",
        )
    fig.suptitle(f"Where the network looks for its prediction (Grad-CAM, {explanation.layer}; red = hot)", fontsize=12)
    fig.tight_layout()
    return fig


def inference_cam_grid(
    images: torch.Tensor, labels: torch.Tensor, explain_images, path: Path, *, per_class: int = 4, seed: int = 0
) -> Path:
    """inference_cam.png: the same test images as inference.png (same seed), each with its map. `explain_images`
    maps a uint8 batch to its Explanation (the caller holds the model)."""
    index = choose_examples(labels, per_class, seed)
    return save_png(cam_grid_figure(images, labels, explain_images(images[index]), index), path, fast=False)
