"""`resnet-cifar evaluate` and `resnet-cifar plot`: test a run's weights, write results and pictures."""

from __future__ import annotations

import time
from pathlib import Path

from resnet_cifar import run_folder
from resnet_cifar.data.cifar10 import Split, load_split
from resnet_cifar.data.locate import find_dataset
from resnet_cifar.errors import ConfigError
from resnet_cifar.evaluate.results import write_results
from resnet_cifar.inference.calibration import calibration_report
from resnet_cifar.inference.loading import load_model
from resnet_cifar.inference.tta import predict_logits


def test_logits(loaded, images, tta: int, batch_size: int | None = None):
    """Logits of `images` as the weights' own final test ran: their eval batch, runtime, memory format,
    normalisation and share of images given the TTA views."""
    return predict_logits(
        loaded.model,
        images,
        tta=tta,
        batch_size=batch_size or loaded.config.get("eval_batch_size", 250),
        runtime=loaded.runtime,
        channels_last=loaded.channels_last,
        normalization=loaded.normalization,
        tta_share=loaded.config.get("tta_share", 1.0),
    )


def in_run_folder(loaded) -> bool:
    """Whether the weights sit in a run folder (results go there) rather than in a bare file."""
    return (loaded.run_dir / run_folder.CONFIG).is_file() and bool(loaded.config)


def _weights_and_data(source, which, tta, data_dir, download, model_name, model_options, device, bf16):
    """(the loaded weights, the dataset, the TTA level: the one asked for, else the weights' own): what evaluate and
    the corruption benchmark both start from."""
    loaded = load_model(source, which, model_name=model_name, model_options=model_options, device=device, bf16=bf16)
    dataset = find_dataset(data_dir, download=download, fallback=loaded.metadata.get("data_folder"))
    return loaded, dataset, loaded.config.get("tta", 1) if tta is None else tta


def evaluate_source(
    source: str | Path,
    *,
    which: str = "last",
    tta: int | None = None,
    data_dir=None,
    download: bool = True,
    model_name: str | None = None,
    model_options: dict | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    bf16: bool | str = "auto",
    output_dir: str | Path = "outputs",
) -> dict:
    """Evaluate a run folder's (or a weights file's) model on the full test set and write its results JSON: into the
    run folder for a run (or a checkpoint inside one), else into `output_dir` as `<file stem>-results.json` (never
    beside a bare weights file, which may sit inside the installed package).

    `device` and `bf16` default to the run's own final test where this machine runs its precision natively
    (resnet_cifar.runtime), with its batch size and memory format, so the run's test accuracy is reproduced."""
    loaded, dataset, tta = _weights_and_data(
        source, which, tta, data_dir, download, model_name, model_options, device, bf16
    )
    runtime = loaded.runtime
    in_run = in_run_folder(loaded)
    if Path(source).is_file():  # a file names its checkpoint itself: last, best, or any other name
        which = loaded.path.stem
    config = loaded.config
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    started = time.perf_counter()
    logits = test_logits(loaded, test.images, tta, batch_size)
    seconds = time.perf_counter() - started
    # one naming rule: results.json for the weights' own TTA level, results-WHICH-ttaN.json for any other; a file
    # outside a run gets its stem in front (`default-results.json`, `default-results-last-tta0.json`)
    filename = run_folder.results_filename(which if in_run else "last", tta, config.get("tta", 1))
    folder = loaded.run_dir if in_run else Path(output_dir)
    if not in_run:
        filename = f"{loaded.path.stem}-{filename}"
    results = write_results(
        folder,
        logits,
        test.labels,
        tta=tta,
        weights=which,
        seconds=seconds,
        filename=filename,
        model=loaded.name,
        ema=loaded.ema_weights,
        source=str(loaded.path),
        runtime=runtime.as_dict(),
        calibration=calibration_report(logits, test.labels, loaded.temperature),  # T from the validation split
    )
    results["path"] = str(folder / filename)
    return results


def plot_run(
    run: str | Path,
    *,
    data_dir=None,
    download: bool = True,
    device: str = "auto",
    bf16: bool | str = "auto",
    output_dir: str | Path = "outputs",
    explain: bool = False,
    cam_layer: str | None = None,
) -> list[Path]:
    """Write the run's pictures from its saved test logits (or by evaluating its final weights). A weights file
    outside a run (shipped, imported) gets its inference grid and confusion matrix in `output_dir/<stem>-pictures/`.
    `explain`: also inference_cam.png, the grid's images with their class-activation maps (at `cam_layer`)."""
    from resnet_cifar.viz.run_pictures import describe_predictions, write_run_pictures

    run = Path(run)
    if run.is_file() and (run.parent / run_folder.CONFIG).is_file():
        raise ConfigError(f"plot needs a run folder, not one of its checkpoints: plot {run.parent}")
    if not run.exists():
        raise ConfigError(f"plot needs a run folder or a weights file; {run} is not there")
    loaded = load_model(run, "last", device=device, bf16=bf16)
    dataset = find_dataset(data_dir, download=download, fallback=loaded.metadata.get("data_folder"))
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    config = loaded.config
    stored = run_folder.load_logits(run) if run.is_dir() else None
    if run.is_file():  # never a run's folder: `default.safetensors` must not draw into outputs/default
        run = Path(output_dir) / f"{run.stem}-pictures"
        run.mkdir(parents=True, exist_ok=True)
    if stored is not None:
        logits, meta = stored
        weights, tta = meta.get("weights", "last"), int(meta.get("tta", config.get("tta", 1)))
    else:
        weights, tta = "last", config.get("tta", 1)
        logits = test_logits(loaded, test.images, tta)
    written = write_run_pictures(
        run,
        test.images,
        test.labels,
        logits / loaded.temperature,
        seed=config.get("seed", 0),
        label_smoothing=config.get("label_smoothing", 0.0),
        which=describe_predictions(weights, tta, loaded.ema_weights),
    )
    if explain:
        written.append(_cam_grid(loaded, test, run / "inference_cam.png", tta, cam_layer, config.get("seed", 0)))
    return written


def _cam_grid(loaded, test, path: Path, tta: int, layer: str | None, seed: int) -> Path:
    from resnet_cifar.inference.explain import explain_loaded
    from resnet_cifar.viz.cam_pictures import inference_cam_grid

    def explain_batch(images):
        return explain_loaded(loaded, images, tta=tta, layer=layer)

    return inference_cam_grid(test.images, test.labels, explain_batch, path, seed=seed)


def evaluate_corruptions(
    source: str | Path,
    *,
    corruptions: tuple[str, ...],
    images: int | None = None,
    seed: int = 0,
    which: str = "last",
    tta: int | None = None,
    data_dir=None,
    download: bool = True,
    model_name: str | None = None,
    model_options: dict | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    bf16: bool | str = "auto",
    output_dir: str | Path = "outputs",
    split: str = "test",
    progress=print,
) -> tuple[dict, Path, Path]:
    """The corruption benchmark of a run's (or weights file's) model: (report, its JSON file, the example picture),
    written into the run folder (`corruptions.json`, `corruptions.png`) or `output_dir/<stem>-corruptions.*`.
    `split="val"` runs it on the weights' own validation split instead (`corruptions-val.*`): what robust recipes
    are tuned on, so that the corrupted test set is only ever measured."""
    from resnet_cifar.evaluate.robustness import run_benchmark, sample, write_report
    from resnet_cifar.viz.corruption_pictures import write_corruption_examples

    loaded, dataset, tta = _weights_and_data(
        source, which, tta, data_dir, download, model_name, model_options, device, bf16
    )
    in_run = in_run_folder(loaded)
    pool = _benchmark_images(dataset, split, loaded.training_config)
    chosen = sample(images, len(pool.labels), seed)
    report = run_benchmark(
        lambda batch: test_logits(loaded, batch, tta, batch_size),
        pool.images[chosen],
        pool.labels[chosen],
        corruptions=corruptions,
        temperature=loaded.temperature,
        seed=seed,
        progress=progress,
    )
    report.update(split=split, weights=str(loaded.path), model=loaded.name, tta=tta, runtime=loaded.runtime.as_dict())
    folder = loaded.run_dir if in_run else Path(output_dir)
    stem = ("corruptions" if in_run else f"{loaded.path.stem}-corruptions") + ("-val" if split == "val" else "")
    folder.mkdir(parents=True, exist_ok=True)
    path = write_report(report, folder / f"{stem}.json")
    picture = write_corruption_examples(pool.images[0], folder / f"{stem}.png", corruptions, seed)
    return report, path, picture


def _benchmark_images(dataset, split: str, config: dict):
    """The test set, or the validation split the weights were trained beside (their config's val_size and
    data_seed, the same seeded split the training carved)."""
    if split == "test":
        return load_split(dataset.folder, "test", fmt=dataset.format)
    if split != "val":
        raise ConfigError(f"--corruption-split: test or val, not {split!r}")
    return validation_split(dataset, config)


def validation_split(dataset, config: dict) -> Split:
    """The validation images a run carved from the training set (its config's val_size and data_seed)."""
    from resnet_cifar.data.splits import train_val_split

    val_size = config.get("val_size", 0)
    if not val_size:
        raise ConfigError("these weights record no validation split (val_size 0 or unknown)")
    train = load_split(dataset.folder, "train", fmt=dataset.format)
    _, val = train_val_split(train.labels, val_size, config.get("data_seed", 0))
    return Split(images=train.images[val], labels=train.labels[val])
