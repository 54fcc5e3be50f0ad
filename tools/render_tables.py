"""Render the tables of README.md and docs/*.md from the results ledger (docs/results/ledger.jsonl).

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->`; the text between is replaced by what
TABLES[NAME] renders from the ledger's records. `--check` changes nothing and exits 1 when a page's table differs
from its rendering (the test suite runs it):

    python tools/render_tables.py           # rewrite the tables in place
    python tools/render_tables.py --check   # do the pages agree with the ledger?
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from resnet_cifar.ledger import LEDGER, read_ledger

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"(<!-- table:([\w-]+) -->\n)(.*?)(<!-- /table:\2 -->)", re.S)


def machine(entry: dict) -> str:
    facts = entry["machine"]
    return f"{facts['cpu']}, {facts['isa']}, {facts['cores']} cores"


def latest_per_machine(records: list[dict], benchmark: str) -> list[dict]:
    """The newest record of `benchmark` for each machine kind (CPU name and ISA) and precision, oldest kind first."""
    chosen: dict[tuple, dict] = {}
    for entry in records:
        if entry["benchmark"] == benchmark:
            chosen[(machine(entry), entry["precision"])] = entry
    return list(chosen.values())


def serve_load(records: list[dict]) -> list[str]:
    lines = [
        "| machine | precision | batching | requests/s | p50 ms | p95 ms | p99 ms | health max ms | date |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    commands = []
    for entry in latest_per_machine(records, "serve_load"):
        numbers = entry["numbers"]
        for setting in ("batching off", "batching on"):
            row = numbers[setting]
            lines.append(
                f"| {machine(entry)} | {entry['precision']} | {setting.split()[1]} | {row['requests_per_s']:.1f} | "
                f"{row['p50_ms']:.0f} | {row['p95_ms']:.0f} | {row['p99_ms']:.0f} | {row['health_max_ms']:.0f} | "
                f"{entry['date']} |"
            )
        commands.append(f"`{entry['command']}` at {entry['git_commit']}")
    return [*lines, "", "Measured by " + "; ".join(sorted(set(commands))) + "."] if commands else lines


TABLES: dict[str, Callable[[list[dict]], list[str]]] = {"serve-load": serve_load}


def render(text: str, records: list[dict]) -> str:
    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r} (known: {', '.join(TABLES)})")
        return match.group(1) + "\n".join(TABLES[name](records)) + "\n" + match.group(4)

    return MARKER.sub(replace, text)


def stale_pages(records: list[dict], pages: list[Path] = PAGES) -> list[Path]:
    return [page for page in pages if page.is_file() and render(page.read_text(), records) != page.read_text()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is stale")
    parser.add_argument("--ledger", type=Path, default=LEDGER)
    args = parser.parse_args()
    records = read_ledger(args.ledger)
    stale = stale_pages(records)
    if args.check:
        for page in stale:
            print(f"{page.relative_to(ROOT)}: a table differs from the ledger (python tools/render_tables.py)")
        return 1 if stale else 0
    for page in stale:
        page.write_text(render(page.read_text(), records))
        print(f"rendered {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
