"""Do the TTA views pay everywhere? Validation accuracy and test-pass time of trained runs when only a share of the
images, the least confident as is first, gets the TTA level's views (the rest: the single view).

Each run must have been trained with a validation split (`val_size` > 0, e.g. a sweep candidate): the split is
rebuilt from the run's own config and nothing is read from the test set. Every image's views are computed once, so
each share's accuracy comes from the same logits; the time of each share is then measured with the real
`predict_logits` (shares alternated, medians of `--rounds`).

    python benchmarks/tta_share.py outputs/sweep/long outputs/sweep/long-silu --shares 1 0.5 0.3 0.2 0.1 0
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from resnet_cifar.config import TrainConfig
from resnet_cifar.errors import ConfigError
from resnet_cifar.inference.loading import load_model
from resnet_cifar.inference.tta import least_confident, predict_logits, view_count
from resnet_cifar.runtime import machine_description
from resnet_cifar.train.batches import prepare_data
from resnet_cifar_lab.scripts import run_main


def validation_split(config: TrainConfig | None) -> tuple[torch.Tensor, torch.Tensor]:
    if config is None or config.val_size == 0:
        raise ConfigError("the run was trained without a validation split (val_size 0): nothing to measure on")
    data = prepare_data(dataclasses.replace(config, download=False))
    return data.val_images, data.val_labels


def accuracy_by_share(single_view: torch.Tensor, tta_logits: torch.Tensor, labels: torch.Tensor, share: float) -> float:
    """Accuracy when the `share` least confident images (by their single view) take the TTA views' mean logits."""
    logits = single_view.clone()
    if share > 0:
        chosen = least_confident(single_view, share)
        logits[chosen] = tta_logits[chosen]
    return (logits.argmax(1) == labels).double().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders trained with a validation split")
    parser.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.5, 0.3, 0.2, 0.1, 0.0])
    parser.add_argument("--level", type=int, default=2, help="the TTA level whose views are shared out")
    parser.add_argument("--rounds", type=int, default=3, help="timing alternations per share (first run only)")
    args = parser.parse_args()
    print(f"machine: {machine_description()}", flush=True)
    accuracies: dict[float, list[float]] = {share: [] for share in args.shares}
    seconds: dict[float, list[float]] = {share: [] for share in args.shares}
    for index, run in enumerate(args.runs):
        loaded = load_model(run, "last")
        images, labels = validation_split(loaded.config)
        options = dict(
            batch_size=loaded.config.eval_batch_size,
            runtime=loaded.runtime,
            channels_last=loaded.channels_last,
            normalization=loaded.normalization,
        )
        single_view = predict_logits(loaded.model, images, tta=0, **options)
        tta_logits = predict_logits(loaded.model, images, tta=args.level, **options)
        for share in args.shares:
            accuracies[share].append(accuracy_by_share(single_view, tta_logits, labels, share))
        if index == 0:  # the times: every share through the real pass, alternated
            for _ in range(args.rounds):
                for share in args.shares:
                    started = time.perf_counter()
                    level = args.level if share > 0 else 0
                    predict_logits(loaded.model, images, tta=level, tta_share=share or 1.0, **options)
                    seconds[share].append(time.perf_counter() - started)
        print(f"{run}: " + ", ".join(f"{share:g}: {accuracies[share][-1]:.2%}" for share in args.shares), flush=True)
    views = view_count(args.level)
    print(f"\nTTA level {args.level} ({views} views) on the validation split, {len(args.runs)} run(s)")
    print("share  views/image  val accuracy (mean of runs)  vs all views  pass seconds (first run, median)")
    full = statistics.mean(accuracies[max(args.shares)])
    for share in args.shares:
        mean = statistics.mean(accuracies[share])
        per_image = 1 + share * (views - 1)
        print(
            f"{share:5g}  {per_image:11.1f}  {mean:27.2%}  {(mean - full) * 100:+11.2f}  "
            f"{statistics.median(seconds[share]):8.1f}"
        )


if __name__ == "__main__":
    raise SystemExit(run_main(main))
