"""The end of a run: the test set once, with the run's TTA level, then its logits, pictures and results.json."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from resnet_cifar import run_folder
from resnet_cifar.evaluate.report import write_results

if TYPE_CHECKING:
    from resnet_cifar.train.loop import Trainer


def final_test(trainer: Trainer) -> dict:
    """Test-set evaluation of the final weights (rank 0): logits, pictures, results.json; returns the results."""
    if not trainer.dist.is_main:
        return {}
    config, timings = trainer.config, trainer.timings
    started = time.perf_counter()
    test = trainer.data.load_test()
    logits = trainer.predict(test.images, tta=config.tta)
    timings["test_s"] = time.perf_counter() - started
    run_folder.save_logits(trainer.run_dir, logits, config.tta, "last")
    if config.plots:
        from resnet_cifar.viz.report import describe_predictions, write_run_pictures

        started = time.perf_counter()
        write_run_pictures(
            trainer.run_dir,
            test.images,
            test.labels,
            logits,
            seed=config.seed,
            publish_to=Path(config.output_dir) / "inference.png" if config.publish_picture else None,
            label_smoothing=config.label_smoothing,
            which=describe_predictions("last", config.tta, trainer.ema is not None),
        )
        timings["pictures_s"] = time.perf_counter() - started
    timings["train_s"] = trainer.train_seconds()
    timings["validation_s"] = sum(row["val_seconds"] or 0.0 for row in trainer.history)
    return write_results(
        trainer.run_dir,
        logits,
        test.labels,
        tta=config.tta,
        weights="last",
        seconds=timings["test_s"],
        model=config.model,
        ema=trainer.ema is not None,
        train_images=len(trainer.data.train_labels),
        train_seconds=trainer.train_seconds(),
        runtime=trainer.runtime.as_dict(),
        timings={key: round(value, 3) for key, value in timings.items()},
    )
