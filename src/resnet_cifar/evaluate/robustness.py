"""The corruption benchmark (`evaluate --corruptions`): accuracy per corruption and severity, the mean corruption
accuracy (mCA), the relative drop (clean - mCA) / clean, per family, and calibration before and after the weights'
temperature, as CIFAR-10-C results are reported."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from resnet_cifar.data.corruptions import CORRUPTIONS, FAMILIES, LEFT_OUT, SEVERITIES, corrupt
from resnet_cifar.errors import ConfigError
from resnet_cifar.evaluate.metrics import accuracy
from resnet_cifar.files import atomic_write_bytes
from resnet_cifar.inference.calibration import expected_calibration_error
from resnet_cifar.runtime import machine_description


def parse_corruptions(text: str) -> tuple[str, ...]:
    """`all`, or names separated by commas (each of CORRUPTIONS)."""
    if text == "all":
        return CORRUPTIONS
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if name not in CORRUPTIONS:
            why = f" ({LEFT_OUT[name]})" if name in LEFT_OUT else ""
            raise ConfigError(
                f"--corruptions: unknown corruption {name!r}{why}; all, or some of {', '.join(CORRUPTIONS)}"
            )
    if not names:
        raise ConfigError("--corruptions: name at least one corruption, or all")
    return names


def sample(count: int | None, total: int, seed: int) -> torch.Tensor:
    """The test images evaluated: all of them, or a seeded sample of `count`."""
    if count is None or count >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:count].sort().values


def run_benchmark(
    predict: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor, *,
    corruptions: tuple[str, ...] = CORRUPTIONS, temperature: float = 1.0, seed: int = 0,
    progress: Callable[[str], None] = lambda line: None,
) -> dict:
    """Accuracy and ECE of `predict` (uint8 images -> logits) on the images clean and under every corruption and
    severity; the summary numbers as CIFAR-10-C reports them."""
    started = time.perf_counter()
    clean_logits = predict(images)
    clean = accuracy(clean_logits, labels)
    table: dict[str, dict[str, float]] = {}
    eces: dict[str, list[float]] = {"before": [], "after": []}
    for index, name in enumerate(corruptions, 1):
        table[name] = {}
        for severity in SEVERITIES:
            logits = predict(corrupt(images, name, severity, seed))
            table[name][str(severity)] = accuracy(logits, labels)
            eces["before"].append(expected_calibration_error(logits, labels))
            eces["after"].append(expected_calibration_error(logits / temperature, labels))
        mean = sum(table[name].values()) / len(SEVERITIES)
        progress(f"corruption {index}/{len(corruptions)} {name}: mean accuracy {mean:.4f}")
    return {
        "images": len(labels),
        "seed": seed,
        **summary(clean, table),
        "accuracy": table,
        "calibration": {
            "temperature": temperature,
            "clean_ece_before": expected_calibration_error(clean_logits, labels),
            "clean_ece_after": expected_calibration_error(clean_logits / temperature, labels),
            "corrupted_ece_before": sum(eces["before"]) / len(eces["before"]),
            "corrupted_ece_after": sum(eces["after"]) / len(eces["after"]),
        },
        "left_out": LEFT_OUT,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine_description(),
    }


def summary(clean: float, table: dict[str, dict[str, float]]) -> dict:
    """The numbers CIFAR-10-C reports: clean accuracy, mean corruption accuracy (mCA), the relative drop
    (clean - mCA) / clean, and the mean accuracy per family and per corruption."""
    means = {name: sum(row.values()) / len(row) for name, row in table.items()}
    mca = sum(means.values()) / len(means)
    families = {
        family: sum(means[n] for n in names if n in means) / max(1, sum(n in means for n in names))
        for family, names in FAMILIES.items()
        if any(n in means for n in names)
    }
    return {
        "clean_accuracy": clean, "mean_corruption_accuracy": mca,
        "relative_drop": (clean - mca) / clean if clean else None, "per_family": families, "per_corruption": means,
    }


def write_report(report: dict, path: Path) -> Path:
    atomic_write_bytes(path, (json.dumps(report, indent=2) + "\n").encode())
    return path


def format_report(report: dict) -> str:
    """The Markdown table: accuracy per corruption (rows) and severity (columns), with the summary lines."""
    lines = [
        f"| corruption | {' | '.join(f'severity {s}' for s in SEVERITIES)} | mean |",
        "| --- |" + " ---: |" * (len(SEVERITIES) + 1),
    ]
    for name, row in report["accuracy"].items():
        cells = " | ".join(f"{100 * row[str(s)]:.1f}" for s in SEVERITIES)
        lines.append(f"| {name} | {cells} | {100 * report['per_corruption'][name]:.1f} |")
    families = ", ".join(f"{family} {100 * value:.1f}%" for family, value in report["per_family"].items())
    calibration = report["calibration"]
    lines += [
        "",
        f"clean accuracy {100 * report['clean_accuracy']:.2f}%, mean corruption accuracy "
        f"{100 * report['mean_corruption_accuracy']:.2f}% ({len(report['accuracy'])} corruptions x 5 severities, "
        f"{report['images']:,} images, seed {report['seed']}): relative drop {100 * report['relative_drop']:.1f}%",
        f"per family: {families}",
        f"ECE (15 bins) with the temperature {calibration['temperature']:.3f}: clean "
        f"{calibration['clean_ece_before']:.3f} -> {calibration['clean_ece_after']:.3f}, corrupted (mean) "
        f"{calibration['corrupted_ece_before']:.3f} -> {calibration['corrupted_ece_after']:.3f}",
    ]
    return "\n".join(lines)
