"""Import akamaster/pytorch_resnet_cifar10's published CIFAR ResNets and test them here: theirs vs ours vs the paper.

    git clone https://github.com/akamaster/pytorch_resnet_cifar10   # BSD-2-Clause; never commit its files here
    python benchmarks/published_weights.py pytorch_resnet_cifar10/pretrained_models

Every `resnet*.th` file in the folder goes through `resnet-cifar import` (weights_only, keys mapped, shapes checked)
and is evaluated on the full CIFAR-10 test set (10,000 images, fp32, no TTA, as published), once with option A's
zeros split around the identity as akamaster pads (what the import records) and once with them after it (this
project's default padding), which shows why where option A pads matters for reused weights. The table gives
akamaster's README error, the error we measure, and He et al. 2015's (Table 6).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from resnet_cifar.errors import ConfigError
from resnet_cifar.evaluate.evaluation import evaluate_weights, weights_and_data
from resnet_cifar.inference.importer import import_checkpoint
from resnet_cifar.runtime import machine_description
from resnet_cifar_lab import ledger
from resnet_cifar_lab.depth_study import ANCHORS
from resnet_cifar_lab.scripts import run_main

# Test error in percent: akamaster's README table, and He et al. 2015 Table 6 (ResNet-1202 beside the depth study's).
PUBLISHED = {**ANCHORS["akamaster"], 1202: 6.18}
PAPER = {**ANCHORS["He et al. 2015"], 1202: 7.93}


def depth_of(path: Path) -> int:
    match = re.match(r"resnet(\d+)", path.name)
    return int(match.group(1)) if match else 0


def measure(path: Path, scratch: Path, data_dir: str | None) -> dict:
    """Import `path` twice (the recorded split padding, and zeros after) and return both test errors in percent."""
    errors = {}
    for padding in ("split", "after"):
        weights = scratch / f"{path.stem}-{padding}.safetensors"
        imported = import_checkpoint(path, weights, shortcut_padding=padding, overwrite=True)
        loaded, dataset = weights_and_data(weights, "last", data_dir=data_dir, download=True, device="cpu",
                                           precision="fp32")  # fmt: skip
        results = evaluate_weights(loaded, dataset, tta=0, output_dir=scratch)
        errors[padding] = 100 * (1 - results["top1"])
    return {"model": imported.model, "reported": imported.reported, **errors}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}%"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="the folder holding akamaster's resnet*.th files (pretrained_models/)")
    parser.add_argument("--data-dir", default=None)
    ledger.add_flags(parser)
    args = parser.parse_args()
    files = sorted(Path(args.folder).glob("resnet*.th"), key=depth_of)
    if not files:
        raise ConfigError(f"no resnet*.th files in {args.folder} (akamaster's pretrained_models/ folder)")
    print(f"machine: {machine_description()}; fp32, no TTA, the 10,000 test images")
    print(
        "| model | akamaster README error | ours with their weights (zeros split, as imported) | "
        "ours, zeros after the identity | difference to README | He et al. 2015 |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    measured, reported = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for path in files:
            row = measure(path, Path(scratch), args.data_dir)
            measured[row["model"]] = {"split": row["split"], "after": row["after"]}
            reported[row["model"]] = row["reported"]  # the accuracy akamaster's checkpoint itself stores
            depth = depth_of(path)
            published = PUBLISHED.get(depth)
            gap = f"{row['split'] - published:+.2f}" if published is not None else "–"
            print(
                f"| {row['model']} | {_percent(published)} | {row['split']:.2f}% | {row['after']:.2f}% | {gap} | "
                f"{_percent(PAPER.get(depth))} |",
                flush=True,
            )
    if args.record:
        numbers = {"test_error_percent": measured, "reported_accuracy_percent": reported,
                   "published": "akamaster/pytorch_resnet_cifar10 pretrained_models"}  # fmt: skip
        ledger.append(ledger.record("published_weights", numbers, precision="fp32"), args.ledger)
        print(f"recorded in {args.ledger}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
