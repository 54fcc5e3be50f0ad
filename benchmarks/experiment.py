"""Run one of the package's experiments (`resnet-cifar experiment NAME ...`) and, with `--record`, append what its
report in `--out` measured to the results ledger, with the experiment's own command line.

    python benchmarks/experiment.py gradient-flow --record -- --out outputs/gradient-flow
    python benchmarks/experiment.py depth --record -- --out outputs/depth --seeds 0

For the depth study every finished net is a record of its own (the study may be spread over machines and days), and
the whole study one more once every net has finished. `--report-only` records the report already in `--out`
without running anything.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from resnet_cifar_lab import ledger, summaries
from resnet_cifar_lab.depth_study import NET_RECORD, table6, thesis
from resnet_cifar_lab.scripts import run_main

REPORTS = {  # the report each experiment writes into --out, and what the ledger keeps of it
    "gradient-flow": ("gradient_flow.json", summaries.gradient_flow_numbers),
    "degradation": ("degradation_curves.json", summaries.degradation_numbers),
    "data-efficiency": ("data_efficiency.json", summaries.data_efficiency_numbers),
    "depth": ("depth.json", None),
}


def out_folder(flags: list[str]) -> Path:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--out", default=None)
    given = parser.parse_known_args(flags)[0].out
    return Path(given) if given else None


def record_report(name: str, out: Path, command: list[str], path: Path) -> list[str]:
    """Append the records of the report in `out` that the ledger does not hold yet; what was recorded."""
    report = json.loads((out / REPORTS[name][0]).read_text())
    if name == "depth":
        return record_depth(report, out, command, path)
    if report.get("missing"):
        return []  # a study with points still to train is not the study
    numbers = REPORTS[name][1](report)
    benchmark = f"experiment {name}"
    if ledger.holds(benchmark, numbers, path):
        return []
    seeds = report["settings"].get("seeds") or [report["settings"].get("seed", 0)]
    ledger.append(
        ledger.record(benchmark, numbers, precision=report["precision"], seeds=list(seeds), command=command), path
    )
    return [benchmark]


def record_depth(report: dict, out: Path, command: list[str], path: Path) -> list[str]:
    """Each finished net as kept in OUT/nets (with the configuration it trained with), then the whole study."""
    recorded = []
    for name in report["nets"]:
        entry = json.loads((out / "nets" / f"{name}.json").read_text())
        net = entry["result"]
        if not ledger.holds(NET_RECORD, entry, path):
            ledger.append(
                ledger.record(NET_RECORD, entry, precision=net["precision"], seeds=[net["seed"]], command=command),
                path,
            )
            recorded.append(f"{NET_RECORD} {net['net']}-seed{net['seed']}")
    if report["missing"]:
        return recorded
    nets = report["nets"].values()
    numbers = {
        "table6": table6(report),
        "thesis": thesis(report),
        "nets": {
            name: {k: v for k, v in net.items() if not k.endswith("per_epoch")} for name, net in report["nets"].items()
        },
    }
    if not ledger.holds("experiment depth", numbers, path):
        precision = sorted({net["precision"] for net in nets})
        entry = ledger.record(
            "experiment depth",
            numbers,
            precision="/".join(precision),
            seeds=sorted({net["seed"] for net in nets}),
            command=command,
        )
        ledger.append(entry, path)
        recorded.append("experiment depth")
    return recorded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", choices=sorted(REPORTS))
    parser.add_argument("--report-only", action="store_true", help="record the report in --out; run nothing")
    ledger.add_flags(parser)
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args, flags = parser.parse_args(argv[:split]), argv[split + 1 :]
    command = ["resnet-cifar", "experiment", args.experiment, *flags]
    if not args.report_only:
        done = subprocess.run([sys.executable, "-m", "resnet_cifar", *command[1:]])
        if done.returncode:
            return done.returncode
    out = out_folder(flags) or Path("outputs") / args.experiment
    report_path = out / REPORTS[args.experiment][0]
    if not args.record:
        return 0
    if not report_path.is_file():
        print(f"no report at {report_path}: nothing to record", file=sys.stderr)
        return 1
    written = record_report(args.experiment, out, command, args.ledger)
    print(f"recorded in {args.ledger}: {', '.join(written)}" if written else "already recorded: nothing new")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
