"""results.json: what `resnet-cifar evaluate` and the end of training report about the test set."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.evaluate.metrics import summarize
from resnet_cifar.files import atomic_write_bytes
from resnet_cifar.runtime import machine_description


def write_results(
    run_dir: Path, logits: torch.Tensor, labels: torch.Tensor, *, tta: int, weights: str, seconds: float,
    filename: str = "results.json", **extra,
) -> dict:
    """Summarise test logits, write them as JSON into the run folder, and return them."""
    results = {
        "split": "test", "weights": weights, "tta": tta, **summarize(logits, labels, CLASSES),
        "eval_seconds": round(seconds, 3), "machine": machine_description(),
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run_dir / filename, (json.dumps(results, indent=2) + "\n").encode())
    return results


def format_results(results: dict) -> str:
    lines = [
        f"test images: {results['images']:,}  (weights: {results['weights']}, TTA level {results['tta']})",
        f"top-1 accuracy: {results['top1']:.4f}   top-5 accuracy: {results['top5']:.4f}   loss: {results['loss']:.4f}",
    ]
    calibration = results.get("calibration")
    if calibration and "ece_before" in calibration:
        lines.append(
            f"calibration (temperature {calibration['temperature']:.3f}, fitted on the validation split): "
            f"ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}, "
            f"NLL {calibration['nll_before']:.4f} -> {calibration['nll_after']:.4f}"
        )
    lines.append("per-class accuracy:")
    lines += [f"  {name:<11}{acc:.4f}" for name, acc in results["per_class"].items()]
    return "\n".join(lines)
