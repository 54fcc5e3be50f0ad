"""Side by side: corruption-benchmark reports (`resnet-cifar evaluate ... --corruptions all`) as one Markdown table.

    python tools/compare_robustness.py no-augmix=docs/robustness/no-augmix-corruptions.json \
        robust=docs/robustness/robust-corruptions.json

`--record` appends the comparison to the results ledger, with the machine the reports were measured on, for the
table in docs/robustness.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from resnet_cifar_lab import ledger
from resnet_cifar_lab.summaries import comparison_rows, summary_of


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", metavar="NAME=FILE")
    parser.add_argument("--record", action="store_true", help="append the comparison to the results ledger")
    parser.add_argument("--ledger", type=Path, default=ledger.LEDGER)
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
    print("\n".join(comparison_rows(reports)))
    if args.record:
        record(reports, args)
    return 0


def record(reports: dict[str, dict], args: argparse.Namespace) -> None:
    """One ledger record: each report's summary, on the machine the reports name (they must name one)."""
    machines = {report["runtime"]["machine"] for report in reports.values()}
    precisions = {report["runtime"]["precision"] for report in reports.values()}
    if len(machines) != 1 or len(precisions) != 1:
        raise SystemExit(f"the reports were measured on several machines or precisions: {machines | precisions}")
    columns = [{"name": name, **summary_of(report)} for name, report in reports.items()]  # in the order given
    entry = ledger.record(
        "robustness_comparison",
        {"columns": columns},
        precision=precisions.pop(),
        seeds=sorted({r["seed"] for r in reports.values()}),
    )
    entry["machine"] = ledger.facts_of(machines.pop())
    ledger.append(entry, args.ledger)
    print(f"recorded in {args.ledger}")


if __name__ == "__main__":
    raise SystemExit(main())
