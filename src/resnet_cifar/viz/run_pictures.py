"""Write all pictures of a run folder (end of training, and `resnet-cifar plot`)."""

from __future__ import annotations

from pathlib import Path

import torch

from resnet_cifar.errors import ConfigError
from resnet_cifar.evaluate.metrics import confusion_matrix
from resnet_cifar.files import atomic_write_bytes
from resnet_cifar.run_folder import CONFIG, OUTPUT_DIR, load_logits, read_metrics
from resnet_cifar.viz.pictures import confusion_picture, inference_grid, training_curves


def write_run_pictures(
    run_dir: Path, images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, *, seed: int = 0,
    publish_to: Path | None = None, label_smoothing: float = 0.0, which: str = "",
) -> list[Path]:
    """inference.png, curves.png (when metrics.csv exists) and confusion_matrix.png in `run_dir`.

    `publish_to` also receives a copy of inference.png (the default run's `outputs/inference.png`); `which` names
    the weights and test-time augmentation behind `logits` (the confusion matrix's title).
    """

    written = [inference_grid(images, labels, logits, run_dir / "inference.png", seed=seed)]
    rows = read_metrics(run_dir)
    if rows:
        written.append(training_curves(rows, run_dir / "curves.png", run_dir.name, label_smoothing))
    confusion = confusion_matrix(logits.argmax(1), labels, logits.shape[1])
    written.append(confusion_picture(confusion, run_dir / "confusion_matrix.png", which))
    if publish_to is not None:
        atomic_write_bytes(publish_to, (run_dir / "inference.png").read_bytes())
        written.append(publish_to)
    return written


TTA_NAMES = {0: "no TTA", 1: "flip TTA", 2: "flip + translate TTA"}


def describe_predictions(weights: str, tta: int, ema: bool = False) -> str:
    """e.g. `last weights (EMA), flip TTA`: which predictions a picture shows."""
    return f"{weights} weights{' (EMA)' if ema else ''}, {TTA_NAMES.get(tta, f'TTA {tta}')}"


def plot_run(
    run: str | Path, *, data_dir=None, download: bool = True, device: str = "auto", precision: str = "auto",
    output_dir: str | Path = OUTPUT_DIR, explain: bool = False, cam_layer: str | None = None,
) -> list[Path]:
    """Write the run's pictures from its saved test logits (or by testing its final weights). A weights file outside
    a run (shipped, imported) gets its inference grid and confusion matrix in `output_dir/<stem>-pictures/`.
    `explain`: also inference_cam.png, the grid's images with their class-activation maps (at `cam_layer`)."""
    from resnet_cifar.data.cifar10 import load_split
    from resnet_cifar.evaluate.evaluation import TestSetting, weights_and_data

    run = Path(run)
    if run.is_file() and (run.parent / CONFIG).is_file():
        raise ConfigError(f"plot needs a run folder, not one of its checkpoints: plot {run.parent}")
    if not run.exists():
        raise ConfigError(f"plot needs a run folder or a weights file; {run} is not there")
    loaded, dataset = weights_and_data(run, "last", data_dir=data_dir, download=download, device=device,
                                       precision=precision)  # fmt: skip
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    setting = TestSetting.of_weights(loaded)
    stored = load_logits(run) if run.is_dir() else None
    if run.is_file():  # never a run's folder: `robust.safetensors` must not draw into outputs/robust
        run = Path(output_dir) / f"{run.stem}-pictures"
        run.mkdir(parents=True, exist_ok=True)
    if stored is not None:
        logits, meta = stored
        weights, tta = meta.get("weights", "last"), int(meta.get("tta", setting.tta))
    else:
        weights, tta = "last", setting.tta
        logits = setting.logits(loaded.model, test.images, loaded.runtime)
    trained = loaded.config if "config" in loaded.metadata else None  # a run's checkpoint, not a card's recipe
    seed, smoothing = (trained.seed, trained.label_smoothing) if trained else (0, 0.0)
    which = describe_predictions(weights, tta, loaded.ema_weights)
    written = write_run_pictures(run, test.images, test.labels, logits / loaded.temperature, seed=seed,
                                 label_smoothing=smoothing, which=which)  # fmt: skip
    if explain:
        written.append(_cam_grid(loaded, test, run / "inference_cam.png", tta, cam_layer, seed))
    return written


def _cam_grid(loaded, test, path: Path, tta: int, layer: str | None, seed: int) -> Path:
    from resnet_cifar.inference.explain import explain_loaded
    from resnet_cifar.viz.cam_pictures import inference_cam_grid

    def explain_batch(images):
        return explain_loaded(loaded, images, tta=tta, layer=layer)

    return inference_cam_grid(test.images, test.labels, explain_batch, path, seed=seed)
