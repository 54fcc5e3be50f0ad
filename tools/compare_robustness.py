"""Side by side: corruption-benchmark reports (`resnet-cifar evaluate ... --corruptions all`) as one Markdown table.

    python tools/compare_robustness.py earlier=docs/robustness/earlier-corruptions.json \
        robust=docs/robustness/robust-corruptions.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from resnet_cifar.data.corruptions import FAMILIES


def rows(reports: dict[str, dict]) -> list[str]:
    names = list(reports)
    lines = [f"| | {' | '.join(names)} |", "| --- |" + " ---: |" * len(names)]

    def line(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | {' | '.join(values)} |")

    line("clean accuracy", [f"{100 * r['clean_accuracy']:.2f}%" for r in reports.values()])
    line("mean corruption accuracy", [f"{100 * r['mean_corruption_accuracy']:.2f}%" for r in reports.values()])
    line("**relative drop**", [f"**{100 * r['relative_drop']:.1f}%**" for r in reports.values()])
    for family in FAMILIES:
        line(f"{family} (mean)", [f"{100 * r['per_family'][family]:.1f}%" for r in reports.values()])
    for corruption in next(iter(reports.values()))["per_corruption"]:
        line(f"&nbsp;&nbsp;{corruption}", [f"{100 * r['per_corruption'][corruption]:.1f}%" for r in reports.values()])
    line("ECE clean, after temperature", [f"{r['calibration']['clean_ece_after']:.3f}" for r in reports.values()])
    line("ECE corrupted (mean), before → after", [
        f"{r['calibration']['corrupted_ece_before']:.3f} → {r['calibration']['corrupted_ece_after']:.3f}"
        for r in reports.values()
    ])  # fmt: skip
    line("temperature", [f"{r['calibration']['temperature']:.3f}" for r in reports.values()])
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", metavar="NAME=FILE")
    args = parser.parse_args()
    reports = {}
    for item in args.reports:
        name, _, file = item.partition("=")
        reports[name] = json.loads(Path(file or name).read_text())
    sources = ", ".join(f"{name}: {Path(report['weights']).name}" for name, report in reports.items())
    images = sorted({report["images"] for report in reports.values()})
    splits = sorted({report.get("split", "test") for report in reports.values()})
    ttas = sorted({report["tta"] for report in reports.values()})
    print(f"{sources}; {'/'.join(splits)} images {images}, TTA {ttas}")
    print("\n".join(rows(reports)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
