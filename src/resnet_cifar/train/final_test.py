"""The end of a run: the test set once, in the run's test setting (the one `resnet-cifar evaluate RUN` uses), then its
logits, pictures and results.json."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from torch import nn

from resnet_cifar import run_folder
from resnet_cifar.config import TrainConfig
from resnet_cifar.evaluate.evaluation import TestSetting
from resnet_cifar.evaluate.results import write_results
from resnet_cifar.inference.calibration import calibration_report, temperature_of
from resnet_cifar.runtime import Runtime
from resnet_cifar.train.batches import TrainingData


def _load_pictures() -> None:
    from resnet_cifar.viz.pictures import warm_up

    warm_up()


def final_test(
    run_dir: Path, config: TrainConfig, data: TrainingData, model: nn.Module, runtime: Runtime, *, history: list[dict],
    timings: dict[str, float], calibration: dict | None = None, ema: bool = False,
) -> dict:
    """Test-set evaluation of the final weights: logits, pictures, results.json; returns the results.

    `timings` (where the run's time went) gains the test and picture times; `calibration`: the temperature fitted on
    the validation split (the pictures show calibrated confidences, and results.json the test set's calibration
    before and after it)."""
    temperature = temperature_of(calibration)
    if config.plots:  # matplotlib loads while the test pass computes (its kernels leave the interpreter free)
        importing = threading.Thread(target=_load_pictures, daemon=True)
        importing.start()
    started = time.perf_counter()
    test = data.load_test()
    logits = TestSetting.of_run(config).logits(model, test.images, runtime)
    timings["test_s"] = time.perf_counter() - started
    run_folder.save_logits(run_dir, logits, config.tta, "last")
    if config.plots:
        importing.join()
        from resnet_cifar.viz.run_pictures import describe_predictions, write_run_pictures

        started = time.perf_counter()
        publish = Path(config.output_dir) / "inference.png" if config.publish_picture else None
        which = describe_predictions("last", config.tta, ema)
        write_run_pictures(run_dir, test.images, test.labels, logits / temperature, seed=config.seed,
                           publish_to=publish, label_smoothing=config.label_smoothing, which=which)  # fmt: skip
        timings["pictures_s"] = time.perf_counter() - started
    timings["train_s"] = run_folder.training_seconds(history)
    timings["validation_s"] = sum(row["val_seconds"] or 0.0 for row in history)
    return write_results(
        run_dir, logits, test.labels, tta=config.tta, weights="last", seconds=timings["test_s"], model=config.model,
        ema=ema, train_images=len(data.train_labels), train_seconds=timings["train_s"], runtime=runtime.as_dict(),
        timings={key: round(value, 3) for key, value in timings.items()},
        calibration={**(calibration or {}), "test": calibration_report(logits, test.labels, temperature)},
    )
