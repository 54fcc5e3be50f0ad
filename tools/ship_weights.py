"""Ship the weights of a finished run inside the package: src/resnet_cifar/weights/NAME.safetensors + NAME.json.

`--name default` (the default) makes the weights `resnet-cifar predict` uses without --weights; `--name resnet56`
ships a paper ResNet, loadable as `--weights resnet56`, `load_pretrained("resnet56")` and through hubconf.py.
`--half` stores the tensors in float16 (half the size; every number in the card is measured on the stored tensors).

The model card records how the run was made (command, config, seed, date, machine) and the test accuracy of exactly
these weights, measured here in fp32 (the precision `resnet-cifar predict` runs them in on CPUs without native
bf16), with and without TTA.
tests/test_shipped_weights.py checks that the shipped file reproduces those numbers.

    resnet-cifar train --config configs/robust.yaml
    resnet-cifar evaluate outputs/robust --corruptions all
    python tools/ship_weights.py outputs/robust
    python tools/ship_weights.py outputs/depth/runs/resnet56-seed0 --name resnet56 --half \
        --command "resnet-cifar experiment depth"

The run's corruption benchmark (`corruptions.json`, or `--corruptions REPORT`) goes into the card: clean, per-family
and mean corrupted accuracy, the relative drop, the machine and the command, with a spot check (one corruption and
severity on a seeded sample, fp32) that tests/test_shipped_weights.py reproduces from the shipped file.

The card also carries the temperature fitted on the run's validation split (flip TTA, as `predict` runs by
default) and the test set's calibration before and after it; `--recalibrate` refits it for the weights already
shipped, leaving their tensors as they are.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

from resnet_cifar import run_folder
from resnet_cifar.checkpoint import WRITTEN_KEYS, load_checkpoint, recorded_precision, save_checkpoint
from resnet_cifar.data.cifar10 import load_split
from resnet_cifar.data.corruptions import corrupt
from resnet_cifar.data.locate import find_dataset
from resnet_cifar.evaluate.evaluation import validation_split
from resnet_cifar.evaluate.metrics import accuracy
from resnet_cifar.evaluate.robustness import sample
from resnet_cifar.inference.calibration import calibration_report, fit_temperature
from resnet_cifar.inference.loading import WEIGHTS_DIR, load_model
from resnet_cifar.inference.tta import predict_logits, predict_logits_and_single_view
from resnet_cifar.models import count_parameters
from resnet_cifar.runtime import choose_runtime, machine_description
from resnet_cifar_lab.scripts import run_main


def calibration_of(loaded, dataset, config, test) -> dict:
    """The temperature fitted on the run's validation split (the same seeded split it was selected on, never the
    test set) at flip TTA, fp32, and the calibration it gives on the test set."""
    val = validation_split(dataset, config)
    fp32 = choose_runtime("cpu", "fp32")
    norm = loaded.normalization
    val_logits = predict_logits(loaded.model.cpu(), val.images, tta=1, runtime=fp32, normalization=norm)
    temperature = fit_temperature(val_logits, val.labels)
    test_logits = predict_logits(loaded.model, test.images, tta=1, runtime=fp32, normalization=norm)
    return {
        "temperature": temperature,
        "fitted_on": f"the run's validation split ({len(val.labels):,} images, data_seed {config.data_seed}), flip TTA",
        "validation": calibration_report(val_logits, val.labels, temperature),
        "test": calibration_report(test_logits, test.labels, temperature),
    }


SPOT_CHECK = {"corruption": "gaussian_noise", "severity": 3, "images": 500, "seed": 0}


def spot_check_accuracy(loaded, test, check: dict = SPOT_CHECK) -> float:
    """Flip-TTA accuracy in fp32 on `check["images"]` seeded test images under one corruption and severity: the
    number tests/test_shipped_weights.py recomputes from the shipped file."""
    chosen = sample(check["images"], len(test.labels), check["seed"])
    images = corrupt(test.images[chosen], check["corruption"], check["severity"], check["seed"])
    fp32 = choose_runtime("cpu", "fp32")
    logits = predict_logits(
        loaded.model.cpu(), images, tta=1, runtime=fp32, batch_size=250, normalization=loaded.normalization
    )
    return accuracy(logits, test.labels[chosen])


SUBSET_SEED = 0
# The suite recomputes every shipped file's subset check: each costs at most what 1,000 images cost ResNet-32
# (69 MMACs each, ~3 s of a 2-core Zen 3 in fp32), so deeper nets get fewer images and the suite stays short.
SUBSET_BUDGET_MACS = 1000 * 69e6


def subset_size(model: torch.nn.Module) -> int:
    """Images in the subset check: 1,000, or fewer (a multiple of 10, at least 200) where the net costs more."""
    from resnet_cifar.models.summary import count_macs

    macs = count_macs(copy.deepcopy(model).cpu().float())  # a copy: the weights as loaded stay as they are
    fitting = int(SUBSET_BUDGET_MACS / macs // 10 * 10)
    return max(200, min(1000, fitting))


def subset_check(loaded, test, images: int | None = None) -> dict:
    """Accuracy (single view, flip TTA) and calibration in fp32 on a seeded class-balanced test subset: what
    tests/test_shipped_weights.py recomputes from every shipped file in a few seconds."""
    from resnet_cifar.data.splits import balanced_subset

    check = {"images": images or subset_size(loaded.model), "seed": SUBSET_SEED}
    chosen = balanced_subset(test.labels, check["images"], check["seed"])
    fp32 = choose_runtime("cpu", "fp32")
    options = {"runtime": fp32, "batch_size": 250, "normalization": loaded.normalization}
    flip, single = predict_logits_and_single_view(loaded.model.cpu(), test.images[chosen], tta=1, **options)
    labels = test.labels[chosen]
    return {
        **check,
        "precision": "fp32",
        "no_tta": accuracy(single, labels),
        "tta_flip": accuracy(flip, labels),
        "ece_after": calibration_report(flip, labels, loaded.temperature)["ece_after"],
    }


def robustness_of(report_path: Path, loaded, test) -> dict:
    """The card's robustness entry: the benchmark's summary (as run on the finished run) and the spot check."""
    report = json.loads(report_path.read_text())
    if report.get("split", "test") != "test" or report.get("images") != len(test.labels):
        raise SystemExit(f"{report_path}: the card needs the benchmark on the full test set")
    keep = ("images", "seed", "tta", "runtime", "clean_accuracy", "mean_corruption_accuracy", "relative_drop")
    summary = {key: report.get(key) for key in keep}
    summary.update(
        per_family=report["per_family"],
        per_corruption=report["per_corruption"],
        calibration=report["calibration"],
        left_out=sorted(report.get("left_out", {})),
        seconds=report.get("seconds"),
        machine=report.get("machine"),
        command=f"resnet-cifar evaluate RUN --corruptions all (report {report_path.name})",
    )
    summary["spot_check"] = {**SPOT_CHECK, "precision": "fp32, flip TTA", "accuracy": spot_check_accuracy(loaded, test)}
    return summary


def recalibrate(name: str, data_dir: str | None) -> None:
    """Fit the shipped weights' temperature again and store it, their normalisation and their subset check in their
    metadata and card (tensors unchanged)."""
    path = WEIGHTS_DIR / f"{name}.safetensors"
    tensors, metadata = load_checkpoint(path)
    loaded = load_model(path, device="cpu", precision="fp32")
    card = metadata["card"]
    dataset = find_dataset(data_dir)
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    card["calibration"] = calibration_of(loaded, dataset, loaded.config, test)
    card["normalization"] = loaded.normalization.as_dict()  # files from before it was recorded: CIFAR-10's
    images = card.get("subset_check", {}).get("images")  # the same subset as before
    card["subset_check"] = subset_check(_with(loaded, card), test, images)
    write_shipped(path, tensors, {k: v for k, v in metadata.items() if k not in WRITTEN_KEYS}, card)
    print(f"recalibrated {path}: {json.dumps(card['calibration'], indent=1)}")


def _with(loaded, card: dict):
    """`loaded` answering with the temperature of `card` (the one just fitted)."""
    loaded.metadata = {**loaded.metadata, "card": card, "calibration": card["calibration"]}
    return loaded


def write_shipped(path: Path, tensors: dict, metadata: dict, card: dict) -> None:
    save_checkpoint(path, tensors, {**metadata, "normalization": card["normalization"], "card": card})
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def storage_check(trained: torch.Tensor, stored: torch.Tensor, labels: torch.Tensor) -> dict:
    """The single-view test accuracy of the weights as trained (float32) and as stored, and how many of the test
    images' predictions the storage changed: what shows that float16 storage loses nothing."""
    return {
        "trained_float32_no_tta": round(accuracy(trained, labels), 4),
        "stored_no_tta": round(accuracy(stored, labels), 4),
        "predictions_changed": int((trained.argmax(1) != stored.argmax(1)).sum()),
    }


def training_record(run: Path, metadata: dict) -> dict:
    """Where and how long the run trained: the machine its checkpoint names, the hours of its training loop (the
    epochs' seconds in metrics.csv) and its precision."""
    seconds = run_folder.training_seconds(run_folder.read_metrics(run / "metrics.csv"))
    precision = recorded_precision(metadata)
    record = {
        "machine": metadata.get("runtime", {}).get("machine"),
        "precision": precision,
        "hours": round(seconds / 3600, 2),
    }
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", help="the finished run folder")
    parser.add_argument("--name", default="robust", help="the shipped name (robust, resnet20, resnet56, ...)")
    parser.add_argument("--half", action="store_true", help="store the tensors in float16")
    parser.add_argument("--command", default=None, help="default: resnet-cifar train --config configs/<run name>.yaml")
    parser.add_argument("--corruptions", default=None, help="benchmark report (default: RUN/corruptions.json)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--recalibrate", action="store_true", help="only refit the shipped weights' temperature")
    args = parser.parse_args()
    if args.recalibrate:
        recalibrate(args.name, args.data_dir)
        return
    if args.run is None:
        parser.error("name the finished run folder (or --recalibrate)")
    loaded = load_model(args.run, "last", device="cpu", precision="fp32")
    config = loaded.config
    if config is None:
        raise SystemExit(f"{args.run} records no training configuration: ship a run's weights")
    dataset = find_dataset(args.data_dir, fallback=loaded.metadata.get("data_folder"))
    test = load_split(dataset.folder, "test", fmt=dataset.format)
    fp32 = choose_runtime("cpu", "fp32")  # as the card says, and as the test reproduces it on any machine
    trained = predict_logits(loaded.model, test.images, tta=0, runtime=fp32, normalization=loaded.normalization)
    storage = torch.float16 if args.half else torch.float32
    state = {
        f"model.{k}": (v.to(storage) if v.is_floating_point() else v) for k, v in loaded.model.state_dict().items()
    }
    loaded.model.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})  # measure what is stored
    measured, stored = {}, {}
    for tta in (0, 1, 2):
        stored[tta] = predict_logits(
            loaded.model, test.images, tta=tta, runtime=fp32, normalization=loaded.normalization
        )
        measured[f"tta{tta}"] = round(accuracy(stored[tta], test.labels), 4)
    card = {
        "model": loaded.name,
        "model_options": loaded.options,
        "parameters": count_parameters(loaded.model),
        "weights": "exponential moving average" if loaded.ema_weights else "final weights",
        "storage": str(storage).removeprefix("torch."),
        "command": args.command or f"resnet-cifar train --config configs/{config.name or 'shipped'}.yaml",
        "config": config.to_dict(),
        "seed": config.seed,
        "trained_on": f"{config.train_size or 50_000 - config.val_size} CIFAR-10 training images",
        "training": training_record(Path(args.run), loaded.metadata),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "test_accuracy": {
            "images": len(test.labels),
            "precision": "fp32 (as resnet-cifar predict runs on CPUs without native bf16)",
            "no_tta": measured["tta0"],
            "tta_flip": measured["tta1"],
            "tta_flip_translate": measured["tta2"],
        },
        "storage_check": storage_check(trained, stored[0], test.labels),
        "source_run": Path(args.run).name,
        "normalization": loaded.normalization.as_dict(),
    }
    card["calibration"] = calibration_of(loaded, dataset, config, test)
    card["subset_check"] = subset_check(_with(loaded, card), test)
    report = Path(args.corruptions) if args.corruptions else Path(args.run) / "corruptions.json"
    if report.is_file():
        card["robustness"] = robustness_of(report, loaded, test)
    elif args.corruptions:
        raise SystemExit(f"{report}: no such benchmark report")
    path = WEIGHTS_DIR / f"{args.name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_shipped(path, state, {"model": loaded.name, "model_options": loaded.options}, card)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.2f} MB) and its model card; test accuracy {measured}")
    assert size <= 5e6, "shipped weights must stay under 5 MB"


if __name__ == "__main__":
    sys.exit(run_main(main))  # a missing dataset or a bad flag value: one line, no traceback
