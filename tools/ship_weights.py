"""Make the shipped default weights from a finished run: src/resnet_cifar/weights/default.safetensors + default.json.

The model card records how the run was made (command, config, seed, date, machine) and the test accuracy of exactly
these weights, measured here in fp32 the way `resnet-cifar predict` runs them, with and without TTA.
tests/test_shipped_weights.py checks that the shipped file reproduces those numbers.

    resnet-cifar train --config configs/shipped.yaml
    python tools/ship_weights.py outputs/shipped
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from resnet_cifar.checkpoint import save_checkpoint
from resnet_cifar.cli import run_reporting_errors
from resnet_cifar.data.cifar10 import load_split
from resnet_cifar.data.locate import find_dataset
from resnet_cifar.evaluate.metrics import accuracy
from resnet_cifar.inference.loading import DEFAULT_WEIGHTS, load_model
from resnet_cifar.inference.tta import predict_logits
from resnet_cifar.models import count_parameters
from resnet_cifar.runtime import machine_description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the finished run folder")
    parser.add_argument("--command", default="resnet-cifar train --config configs/shipped.yaml")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    loaded = load_model(args.run, "last")
    config = loaded.config
    dataset = find_dataset(args.data_dir, fallback=loaded.metadata.get("data_folder"))
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    measured = {}
    for tta in (0, 1, 2):
        logits = predict_logits(loaded.model, test.images, tta=tta)
        measured[f"tta{tta}"] = round(accuracy(logits, test.labels), 4)
    state = {f"model.{k}": v.contiguous() for k, v in loaded.model.state_dict().items()}
    card = {
        "model": loaded.name,
        "model_options": loaded.options,
        "parameters": count_parameters(loaded.model),
        "weights": "exponential moving average" if loaded.averaged else "final weights",
        "command": args.command,
        "config": config,
        "seed": config.get("seed"),
        "trained_on": f"{config.get('train_size') or 50_000 - config.get('val_size', 0)} CIFAR-10 training images",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "test_accuracy": {
            "images": len(test.labels),
            "precision": "fp32 (as resnet-cifar predict runs it)",
            "no_tta": measured["tta0"],
            "tta_flip": measured["tta1"],
            "tta_flip_translate": measured["tta2"],
        },
        "source_run": Path(args.run).name,
    }
    DEFAULT_WEIGHTS.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(DEFAULT_WEIGHTS, state, {"model": loaded.name, "model_options": loaded.options, "card": card})
    DEFAULT_WEIGHTS.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    size = DEFAULT_WEIGHTS.stat().st_size
    print(f"wrote {DEFAULT_WEIGHTS} ({size / 1e6:.2f} MB) and its model card; test accuracy {measured}")
    assert size <= 5e6, "the shipped weights must stay under 5 MB"


if __name__ == "__main__":
    sys.exit(run_reporting_errors(main))  # a missing dataset or a bad flag value: one line, no traceback
