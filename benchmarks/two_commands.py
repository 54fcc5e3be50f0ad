"""Time the README's two commands, `make train` and `make test`, in this checkout, and append them to the ledger.

Each runs as a user runs it (the environment is created first when it is missing, so the first run includes it;
the record says whether it did). Printed: the wall time of each, `make train`'s test accuracy and precision, and how
many tests passed in how long. The README's table of the two commands is rendered from these records.

    python benchmarks/two_commands.py              # both
    python benchmarks/two_commands.py --only test  # one of them
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from resnet_cifar.runtime import machine_description
from resnet_cifar_lab import ledger
from resnet_cifar_lab.scripts import run_main

ROOT = Path(__file__).resolve().parents[1]
PYTEST_SUMMARY = re.compile(r"(\d+) passed.*? in ([\d.]+)s")
RUN_LINE = re.compile(r"^run (.+?): ", re.M)
MAKE_TRAIN_CONFIG = "configs/fast80.yaml"  # the Makefile's CONFIG, which `make train` runs


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return seconds, done.stdout + done.stderr


def trained_folder(output: str) -> Path:
    """The run folder a training wrote, from its first line (`run outputs/default: ...`): outputs/default, or
    outputs/default-2, -3 ... where earlier runs hold the name."""
    found = RUN_LINE.search(output)
    if found is None:
        sys.exit(f"make train printed no 'run FOLDER:' line:\n{output[-3000:]}")
    return Path(found.group(1))


def make_train() -> dict:
    fresh = not (ROOT / ".venv" / "bin" / ".installed").exists()
    seconds, output = timed(["make", "train"])
    accuracy = float(re.findall(r"test_accuracy=([\d.]+)", output)[-1])
    results = json.loads((ROOT / trained_folder(output) / "results.json").read_text())
    precision = results["runtime"]["precision"]
    return {"make_train_s": seconds, "test_accuracy": accuracy, "precision": precision, "venv_made": fresh}


def make_test() -> dict:
    seconds, output = timed(["make", "test"])
    passes = PYTEST_SUMMARY.findall(output)  # two on an AVX-512 CPU: the suite, then its AVX2-kernel pass
    return {
        "make_test_s": seconds,
        "tests_passed": sum(int(count) for count, _ in passes),
        "pytest_s": [float(duration) for _, duration in passes],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["train", "test"])
    ledger.add_flags(parser)
    args = parser.parse_args()
    print(f"machine: {machine_description()}")
    numbers: dict = {}
    if args.only in (None, "train"):
        numbers.update(make_train())
        print(f"make train: {numbers['make_train_s']:.1f} s, test_accuracy={numbers['test_accuracy']:.4f}", flush=True)
    if args.only in (None, "test"):
        numbers.update(make_test())
        print(f"make test: {numbers['make_test_s']:.1f} s, {numbers['tests_passed']} passed", flush=True)
    if args.record:
        precision = numbers.pop("precision", "-")
        config = MAKE_TRAIN_CONFIG if "make_train_s" in numbers else None
        ledger.append(
            ledger.record("two_commands", numbers, precision=precision, seeds=[0], config=config), args.ledger
        )


if __name__ == "__main__":
    sys.exit(run_main(main))
