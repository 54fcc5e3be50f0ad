"""`resnet-cifar evaluate` and `resnet-cifar plot`: test a run's weights, write results and pictures."""

from __future__ import annotations

import time
from pathlib import Path

import safetensors.torch
import torch

from resnet_cifar.data.cifar10 import load_split
from resnet_cifar.data.locate import find_dataset
from resnet_cifar.evaluate.inference import predict_logits
from resnet_cifar.evaluate.report import results_filename, write_results
from resnet_cifar.inference.loading import load_model

LOGITS_FILE = "test_logits.safetensors"


def save_logits(run_dir: Path, logits: torch.Tensor, tta: int, weights: str) -> None:
    from resnet_cifar.train.checkpoint import atomic_write_bytes

    data = safetensors.torch.save({"logits": logits.contiguous()}, metadata={"tta": str(tta), "weights": weights})
    atomic_write_bytes(run_dir / LOGITS_FILE, data)


def evaluate_source(
    source: str | Path,
    *,
    which: str = "last",
    tta: int | None = None,
    data_dir=None,
    download: bool = True,
    model_name: str | None = None,
    batch_size: int = 1000,
    bf16: bool | None = None,
) -> dict:
    """Evaluate a run folder's (or a weights file's) model on the full test set; write results JSON beside it."""
    loaded = load_model(source, which, model_name=model_name)
    config = loaded.config
    tta = config.get("tta", 1) if tta is None else tta
    bf16 = config.get("bf16", False) if bf16 is None else bf16
    dataset = find_dataset(data_dir, download=download, fallback=loaded.metadata.get("data_folder"))
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    started = time.perf_counter()
    logits = predict_logits(
        loaded.model,
        test.images,
        tta=tta,
        batch_size=batch_size,
        bf16=bf16,
        channels_last=config.get("channels_last", False),
    )
    seconds = time.perf_counter() - started
    filename = results_filename(which, tta, config.get("tta", 1)) if config else f"{loaded.path.stem}-results.json"
    results = write_results(
        loaded.run_dir,
        logits,
        test.labels,
        tta=tta,
        weights=which,
        seconds=seconds,
        filename=filename,
        model=loaded.name,
        ema=loaded.averaged,
        source=str(loaded.path),
    )
    results["path"] = str(loaded.run_dir / filename)
    return results


def plot_run(run: str | Path, *, data_dir=None, download: bool = True) -> list[Path]:
    """Write the run's pictures from its saved test logits (or by evaluating its final weights)."""
    from resnet_cifar.viz.report import write_run_pictures

    run = Path(run)
    loaded = load_model(run, "last")
    dataset = find_dataset(data_dir, download=download, fallback=loaded.metadata.get("data_folder"))
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    if (run / LOGITS_FILE).is_file():
        logits = safetensors.torch.load_file(str(run / LOGITS_FILE))["logits"]
    else:
        config = loaded.config
        logits = predict_logits(
            loaded.model,
            test.images,
            tta=config.get("tta", 1),
            bf16=config.get("bf16", False),
            channels_last=config.get("channels_last", False),
        )
    return write_run_pictures(run, test.images, test.labels, logits, seed=loaded.config.get("seed", 0))
