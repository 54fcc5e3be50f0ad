"""One evaluation path: how a run's weights are tested (`TestSetting`), used by the end of training and by
`resnet-cifar evaluate` alike, so that evaluating a run reproduces its test accuracy to the last digit.

`evaluate_weights` tests a run folder's (or a weights file's) model on the full test set and writes its results JSON;
`corruption_benchmark` measures the same model under the common corruptions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from resnet_cifar import run_folder
from resnet_cifar.choices import TTA_LEVELS
from resnet_cifar.config import TrainConfig
from resnet_cifar.data.cifar10 import Split, load_split
from resnet_cifar.data.locate import Dataset, find_dataset
from resnet_cifar.data.normalization import CIFAR10, Normalization
from resnet_cifar.errors import CheckpointError, ConfigError
from resnet_cifar.evaluate.results import write_results
from resnet_cifar.inference.calibration import calibration_report
from resnet_cifar.inference.loading import LoadedModel, load_model
from resnet_cifar.inference.tta import predict_logits
from resnet_cifar.runtime import Runtime

BARE_WEIGHTS_BATCH = 250  # weights without a run's configuration (shipped, imported) are tested in batches of this
MAX_BATCH = 100_000


@dataclass(frozen=True)
class TestSetting:
    """How weights are tested: TTA level and the share of images that get its views, the evaluation batch and the
    memory format (both change the last bits of bf16 logits), and the input normalisation."""

    tta: int = 1
    tta_share: float = 1.0
    batch_size: int = BARE_WEIGHTS_BATCH
    channels_last: bool = False
    normalization: Normalization = CIFAR10

    @classmethod
    def of_run(cls, config: TrainConfig, normalization: Normalization = CIFAR10) -> TestSetting:
        """As a run's final test ran (its config's TTA level and share, evaluation batch and memory format)."""
        return cls(config.tta, config.tta_share, config.eval_batch_size, config.channels_last, normalization)

    @classmethod
    def of_weights(cls, loaded: LoadedModel) -> TestSetting:
        """As loaded weights were tested: a run checkpoint's own setting (wherever the file now is), the one an imported
        file records, else the defaults (shipped weights)."""
        if "config" in loaded.metadata:
            return cls.of_run(loaded.config, loaded.normalization)
        return cls.from_record(loaded.metadata.get("test_setting", {}), loaded.normalization)

    @classmethod
    def from_record(cls, record: object, normalization: Normalization = CIFAR10) -> TestSetting:
        """The setting a weights file records (`test_setting`), checked: CheckpointError when it is not one."""
        given = record if isinstance(record, dict) else {"": record}
        setting = cls(given.get("tta", 1), 1.0, given.get("batch_size", BARE_WEIGHTS_BATCH),
                      given.get("channels_last", False), normalization)  # fmt: skip
        valid = (
            set(given) <= {"tta", "batch_size", "channels_last"}
            and type(setting.tta) is int
            and setting.tta in TTA_LEVELS
            and type(setting.batch_size) is int
            and 0 < setting.batch_size <= MAX_BATCH
            and type(setting.channels_last) is bool
        )
        if not valid:
            raise CheckpointError(f"the weights' test_setting is not one: {record!r}")
        return setting

    def logits(self, model: nn.Module, images: torch.Tensor, runtime: Runtime) -> torch.Tensor:
        """float32 test logits of uint8 images."""
        return predict_logits(
            model, images, tta=self.tta, batch_size=self.batch_size, runtime=runtime, channels_last=self.channels_last,
            normalization=self.normalization, tta_share=self.tta_share,
        )


def weights_and_data(
    source, which: str, *, data_dir, download: bool, device: str, precision: str, **model
) -> tuple[LoadedModel, Dataset]:
    """The loaded weights and the dataset they are tested on: what evaluate and the corruption benchmark start from.
    `model`: model_name and model_options for weights files without metadata."""
    loaded = load_model(source, which, device=device, precision=precision, **model)
    return loaded, find_dataset(data_dir, download=download, fallback=loaded.metadata.get("data_folder"))


def evaluate_weights(
    loaded: LoadedModel, dataset: Dataset, *, tta: int | None = None, batch_size: int | None = None,
    output_dir: str | Path = run_folder.OUTPUT_DIR,
) -> dict:
    """Test `loaded` on the full test set and write its results JSON: into the run folder for a run, else into
    `output_dir` as `<file stem>-results.json` (never beside a bare weights file, which may sit inside the installed
    package). `tta` and `batch_size` change the weights' own test setting; the rest of it is theirs."""
    own = TestSetting.of_weights(loaded)
    setting = replace(own, tta=own.tta if tta is None else tta, batch_size=batch_size or own.batch_size)
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    started = time.perf_counter()
    logits = setting.logits(loaded.model, test.images, loaded.runtime)
    seconds = time.perf_counter() - started
    which = loaded.path.stem  # last, best, or the name of a weights file
    # results.json for the weights' own TTA level, results-WHICH-ttaN.json for any other; a file outside a run gets
    # its stem in front (`robust-results.json`, `robust-results-last-tta0.json`)
    filename = run_folder.results_filename(which if loaded.in_run else "last", setting.tta, own.tta)
    folder = loaded.run_dir if loaded.in_run else Path(output_dir)
    if not loaded.in_run:
        filename = f"{loaded.path.stem}-{filename}"
    results = write_results(
        folder,
        logits,
        test.labels,
        tta=setting.tta,
        weights=which,
        seconds=seconds,
        filename=filename,
        model=loaded.name,
        ema=loaded.ema_weights,
        source=str(loaded.path),
        runtime=loaded.runtime.as_dict(),
        calibration=calibration_report(logits, test.labels, loaded.temperature),  # T from the validation split
    )
    return {**results, "path": str(folder / filename)}


def corruption_benchmark(
    loaded: LoadedModel, dataset: Dataset, *, corruptions: tuple[str, ...], images: int | None = None, seed: int = 0,
    tta: int | None = None, batch_size: int | None = None, split: str = "test", progress=print,
) -> tuple[dict, torch.Tensor]:
    """The corruption benchmark of `loaded` on the test set, or on the validation split the weights were trained
    beside (`split="val"`: what robust recipes are tuned on, so that the corrupted test set is only ever measured);
    returns the report and the first image of that set (the one the examples picture shows)."""
    from resnet_cifar.evaluate.robustness import run_benchmark, sample

    own = TestSetting.of_weights(loaded)
    setting = replace(own, tta=own.tta if tta is None else tta, batch_size=batch_size or own.batch_size)
    pool = benchmark_images(dataset, split, loaded.config)
    chosen = sample(images, len(pool.labels), seed)
    report = run_benchmark(
        lambda batch: setting.logits(loaded.model, batch, loaded.runtime), pool.images[chosen], pool.labels[chosen],
        corruptions=corruptions, temperature=loaded.temperature, seed=seed, progress=progress,
    )
    report |= {"split": split, "weights": str(loaded.path), "model": loaded.name, "tta": setting.tta,
               "runtime": loaded.runtime.as_dict()}  # fmt: skip
    return report, pool.images[0]


def benchmark_images(dataset: Dataset, split: str, config: TrainConfig | None) -> Split:
    """The test set, or the validation split the weights were trained beside."""
    if split == "test":
        return load_split(dataset.folder, "test", fmt=dataset.format)
    if split != "val":
        raise ConfigError(f"--corruption-split: test or val, not {split!r}")
    return validation_split(dataset, config)


def validation_split(dataset: Dataset, config: TrainConfig | None) -> Split:
    """The validation images a run carved from the training set (its config's val_size and data_seed)."""
    from resnet_cifar.data.splits import train_val_split

    if config is None or not config.val_size:
        raise ConfigError("these weights record no validation split (val_size 0 or no training configuration)")
    train = load_split(dataset.folder, "train", fmt=dataset.format)
    _, val = train_val_split(train.labels, config.val_size, config.data_seed)
    return Split(images=train.images[val], labels=train.labels[val])
