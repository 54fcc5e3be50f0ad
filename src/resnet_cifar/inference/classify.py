"""`resnet-cifar predict`: top-k classes of image files, folders and globs, in batches, with per-file errors."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.data.normalization import CIFAR10, Normalization
from resnet_cifar.errors import CheckpointError, ImageError
from resnet_cifar.inference.images import as_pixels, load_image
from resnet_cifar.inference.tta import model_device, predict_logits
from resnet_cifar.runtime import Runtime, choose_runtime


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] | None = None  # (class, probability), most likely first
    error: str | None = None


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _folder_entries(folder: Path) -> list[Path | Prediction]:
    """Every visible file under `folder`, sorted (a file that is not an image is reported by name later, never
    skipped), with the entries that cannot be read as files in their places, each with its reason: broken links,
    links to folders (not followed, so a link loop cannot recurse for ever)."""
    entries: list[Path | Prediction] = []
    for entry in sorted(folder.rglob("*")):
        if _hidden(entry.relative_to(folder)):
            continue
        if entry.is_symlink() and not entry.exists():
            entries.append(Prediction(str(entry), error="broken symbolic link"))
        elif entry.is_symlink() and entry.is_dir():
            entries.append(
                Prediction(str(entry), error="symbolic link to a folder: not followed (name it to include it)")
            )
        elif entry.is_symlink() or not entry.is_dir():  # files, and what is not one (a FIFO) to be named
            entries.append(entry)
    return entries


def expand_inputs(inputs: list[str]) -> list[Path | Prediction]:
    """Files as given, folders by their visible files (recursively, sorted), globs expanded, in the order given;
    what cannot be read (an unmatched input, a broken link, an empty folder) stands in its place as an error."""
    entries: list[Path | Prediction] = []
    for item in inputs:
        if isinstance(item, Path | Prediction):  # already expanded
            entries.append(item)
            continue
        if not str(item).strip():
            raise ImageError("an empty name is no image, folder or pattern (it would mean this whole folder)")
        path = Path(item)
        if path.is_dir():
            entries += _folder_entries(path) or [Prediction(item, error="empty folder")]
        elif os.path.lexists(path):  # a file, or something that is not one (a link loop, a FIFO): said by name
            entries.append(path)
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            entries += matches or [Prediction(item, error="no file matches")]
        else:
            entries.append(Prediction(item, error="no such file or folder"))
    return entries


def classify(
    model: nn.Module, images: torch.Tensor, top_k: int = 3, tta: int = 0, class_names: tuple[str, ...] = CLASSES,
    batch_size: int = 256, runtime: Runtime | None = None, temperature: float = 1.0,
    normalization: Normalization = CIFAR10,
) -> list[list[tuple[str, float]]]:
    """Top-k (class, probability) for each image N x 3 x 32 x 32 (uint8 pixels, or floats in [0, 1]; anything else
    is refused), on the model's device (`runtime`: its
    device and precision; default: chosen for the device the model is on). `temperature`: the weights' calibration
    (LoadedModel.temperature), so that "90%" is right about 90% of the time; `normalization`: the statistics the
    weights were trained with (LoadedModel.normalization)."""
    if len(images) == 0:
        return []
    images = as_pixels(images)
    logits = predict_logits(model, images, tta=tta, batch_size=batch_size, runtime=runtime, normalization=normalization)
    probabilities = (logits / temperature).softmax(dim=1)
    if not bool(torch.isfinite(probabilities).all()):
        raise CheckpointError("the weights answer NaN or infinity for these images; they are damaged")
    values, indices = probabilities.topk(min(top_k, probabilities.shape[1]), dim=1)
    return [
        [(class_names[i], round(float(p), 6)) for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(values, indices, strict=True)
    ]


def predict_files(
    model: nn.Module, inputs: list[str | Path | Prediction], top_k: int = 3, tta: int = 0,
    runtime: Runtime | None = None, temperature: float = 1.0, normalization: Normalization = CIFAR10,
) -> list[Prediction]:
    """Predict every readable image; unreadable ones come back with their error, in input order."""
    runtime = runtime or choose_runtime(model_device(model))
    results: list[Prediction] = []
    tensors, readable = [], []
    for entry in expand_inputs(inputs):
        if isinstance(entry, Prediction):
            results.append(entry)
            continue
        try:
            tensors.append(load_image(entry))
            readable.append(len(results))
            results.append(Prediction(str(entry)))
        except ImageError as error:
            results.append(Prediction(str(entry), error=str(error).removeprefix(f"{entry}: ")))
    if tensors:
        for index, top in zip(
            readable,
            classify(
                model, torch.stack(tensors), top_k, tta, runtime=runtime, temperature=temperature,
                normalization=normalization,
            ),
            strict=True,
        ):
            results[index].top = top
    return results


def format_table(predictions: list[Prediction], top_k: int) -> str:
    width = max([len(p.path) for p in predictions] + [4])
    header = f"{'file':<{width}}  " + "  ".join(f"{'top' + str(i + 1):<18}" for i in range(top_k))
    lines = [header, "-" * len(header)]
    for p in predictions:
        if p.error:
            lines.append(f"{p.path:<{width}}  ERROR: {p.error}")
        else:
            cells = [f"{name} {prob:6.1%}" for name, prob in p.top]
            lines.append(f"{p.path:<{width}}  " + "  ".join(f"{c:<18}" for c in cells))
    return "\n".join(lines)


def format_json(predictions: list[Prediction]) -> str:
    return json.dumps(
        [
            {
                "file": p.path, "top": [{"class": c, "probability": q} for c, q in p.top] if p.top else None,
                "error": p.error,
            }
            for p in predictions
        ],
        indent=2,
        allow_nan=False,
    )
