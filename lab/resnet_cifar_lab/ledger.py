"""The results ledger: every published measurement as one JSON line in docs/results/ledger.jsonl.

A benchmark or experiment that produces a published figure appends a record: what was measured (`benchmark`), the
command that measured it, the git commit and the SHA-256 of the config it ran, the machine (CPU name, family/model,
ISA, cores), the precision, the torch version, the seeds, the numbers, and the date. The tables in the README and
docs are rendered from these records (tools/render_tables.py), never typed by hand, and a test fails when a page's
table and the ledger disagree.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "results" / "ledger.jsonl"
LEDGER = Path(os.environ.get("RESNET_CIFAR_LEDGER") or PUBLISHED)  # the test suite points it elsewhere


def machine_facts() -> dict[str, Any]:
    """This machine as data (resnet_cifar.runtime.machine_facts): CPU, family/model, generation, ISA, cores, the GPU."""
    from resnet_cifar.runtime import machine_facts as facts

    return {key: value for key, value in facts().items() if key != "torch"}


def git_commit(folder: Path = PUBLISHED.parent) -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def file_sha256(path: Path | str | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def as_typed(argv: list[str], root: Path = PUBLISHED.parents[2]) -> list[str]:
    """A command line as a user types it in a clone: `resnet-cifar` rather than where a venv keeps it, paths inside
    the clone relative to it, and no `--record` or `--ledger`: they say where a result went, not how to reproduce it.
    """
    typed: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        if arg == "--ledger":
            skip_value = True
            continue
        if arg == "--record" or arg.startswith("--ledger="):
            continue
        if os.path.isabs(arg) and Path(arg).resolve().is_relative_to(root.resolve()):
            arg = Path(arg).resolve().relative_to(root.resolve()).as_posix()
        typed.append(arg)
    if typed and Path(typed[0]).name == "resnet-cifar":
        typed[0] = "resnet-cifar"
    return typed


def record(
    benchmark: str,
    numbers: dict[str, Any],
    *,
    precision: str,
    seeds: list[int] | tuple[int, ...] = (),
    config: Path | str | None = None,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """A ledger record of this process's measurement (the command defaults to this process's command line)."""
    import torch

    argv = as_typed(command if command is not None else [Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    return {
        "benchmark": benchmark,
        "command": "python " + shlex.join(argv) if argv[0].endswith(".py") else shlex.join(argv),
        "config": str(config) if config else None,
        "config_sha256": file_sha256(config),
        "git_commit": git_commit(),
        "machine": machine_facts(),
        "precision": precision,
        "torch": torch.__version__,
        "seeds": list(seeds),
        "numbers": numbers,
        "date": datetime.date.today().isoformat(),
    }


def add_flags(parser) -> None:
    """`--record` and `--ledger FILE`, the flags of every benchmark that can append to the ledger: reproducing a
    number never changes the repository unless recording is asked for."""
    parser.add_argument("--record", action="store_true", help="append the result to the results ledger")
    parser.add_argument("--ledger", type=Path, default=LEDGER, help="the results ledger --record appends to")


def read_ledger(path: Path = LEDGER) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def holds(benchmark: str, numbers: dict[str, Any], path: Path = LEDGER) -> bool:
    """Whether the ledger has a record of `benchmark` with these very numbers (as JSON stores them: lists, string
    keys): a report redrawn from what is recorded, or a rerun that trained nothing, adds no record."""
    as_stored = json.loads(json.dumps(numbers))
    return any(entry["benchmark"] == benchmark and entry["numbers"] == as_stored for entry in read_ledger(path))


@contextlib.contextmanager
def _only_writer(path: Path):
    """Held while the ledger is read and rewritten: two processes that append at once (two workers of one study)
    each keep their record. The lock is a file of its own beside the temporary files, not the ledger, which the
    rename replaces."""
    try:
        import fcntl
    except ImportError:  # Windows: appends are not guarded against each other
        yield
        return
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"resnet-cifar-ledger-{digest}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def append(entry: dict[str, Any], path: Path = LEDGER) -> None:
    """Add `entry` at the end of the ledger (the whole file is written anew and renamed: never half a line)."""
    from resnet_cifar.files import atomic_write_bytes

    with _only_writer(path):
        text = path.read_text() if path.is_file() else ""
        atomic_write_bytes(path, (text + json.dumps(entry, sort_keys=True) + "\n").encode())
