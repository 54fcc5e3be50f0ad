"""What the ledger keeps of each study's report, and the tables several studies share: the numbers the published
tables show, taken from the reports the package's experiments and benchmarks write."""

from __future__ import annotations

from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.data.corruptions import CORRUPTIONS, FAMILIES
from resnet_cifar.experiments.degradation import table


def gradient_flow_numbers(results: dict) -> dict:
    """What the published table shows, per net: the first/last conv gradient ratio and the loss, init and trained."""
    return {
        "steps": results["settings"]["steps"],
        "nets": {
            label: {
                "norm": net["norm"],
                "first_to_last_init": net["init"]["first_to_last"],
                "first_to_last_trained": net["trained"]["first_to_last"],
                "loss_init": net["init"]["loss"],
                "loss_trained": net["trained"]["loss"],
            }
            for label, net in results["nets"].items()
        },
    }


def degradation_numbers(results: dict) -> dict:
    """The published table (final training and test error per net) with the budget and the time it took."""
    settings = results["settings"]
    return {"epochs": settings["epochs"], "nets": table(results), "total_seconds": results.get("total_seconds")}


def data_efficiency_numbers(results: dict) -> dict:
    """Test accuracy per training-set size, mean ± std over seeds, residual and plain twin, with the budget."""
    keep = ("train_size", "epochs", "mean", "std", "n")
    summary = {kind: [{key: row[key] for key in keep} for row in rows] for kind, rows in results["summary"].items()}
    return {"budget": results["budget"], "summary": summary, "seconds": results.get("seconds")}


def comparison_rows(reports: dict[str, dict]) -> list[str]:
    """Corruption-benchmark reports (or their `summary_of`) side by side as one Markdown table, a column each."""
    names = list(reports)
    lines = [f"| | {' | '.join(names)} |", "| --- |" + " ---: |" * len(names)]

    def line(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | {' | '.join(values)} |")

    line("clean accuracy", [f"{100 * r['clean_accuracy']:.2f}%" for r in reports.values()])
    line("mean corruption accuracy", [f"{100 * r['mean_corruption_accuracy']:.2f}%" for r in reports.values()])
    line("**relative drop**", [f"**{100 * r['relative_drop']:.1f}%**" for r in reports.values()])
    for family in FAMILIES:
        line(f"{family} (mean)", [f"{100 * r['per_family'][family]:.1f}%" for r in reports.values()])
    measured = next(iter(reports.values()))["per_corruption"]
    for corruption in [name for name in CORRUPTIONS if name in measured]:
        line(f"&nbsp;&nbsp;{corruption}", [f"{100 * r['per_corruption'][corruption]:.1f}%" for r in reports.values()])
    line("ECE clean, after temperature", [f"{r['calibration']['clean_ece_after']:.3f}" for r in reports.values()])
    line("ECE corrupted (mean), before → after", [
        f"{r['calibration']['corrupted_ece_before']:.3f} → {r['calibration']['corrupted_ece_after']:.3f}"
        for r in reports.values()
    ])  # fmt: skip
    line("temperature", [f"{r['calibration']['temperature']:.3f}" for r in reports.values()])
    return lines


def summary_of(report: dict) -> dict:
    """What `comparison_rows` shows of a report: accuracies clean, per family and per corruption, and calibration."""
    keep = ("clean_accuracy", "mean_corruption_accuracy", "relative_drop", "per_family", "per_corruption", "images")
    calibration = ("clean_ece_after", "corrupted_ece_before", "corrupted_ece_after", "temperature")
    summary = {key: report[key] for key in keep}
    summary["calibration"] = {key: report["calibration"][key] for key in calibration}
    return summary


def cam_table(per_class: dict[str, dict]) -> list[str]:
    """Per class (and "all"): correctly classified images and where their maps put the evidence."""
    lines = [
        "| class | right | mass in the centre 16×16 | top half | bottom half | image covered |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in sorted(per_class, key=lambda name: CLASSES.index(name) if name in CLASSES else len(CLASSES)):
        row = per_class[name]
        lines.append(
            f"| {name} | {row['right']} | {row['centre']:.0%} | {row['top']:.0%} | {row['bottom']:.0%} | "
            f"{row['covered']:.0%} |"
        )
    return lines
