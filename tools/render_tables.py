"""Render the tables of README.md and docs/*.md from the results ledger (docs/results/ledger.jsonl).

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->`; the text between is replaced by what
TABLES[NAME] renders from the ledger's records. Each live config's `# measured:` lines are rendered the same way from
the records of `benchmarks/repeat_runs.py` that ran it. `--check` changes nothing and exits 1 when a page's table
differs from its rendering (the test suite runs it):

    python tools/render_tables.py           # rewrite the tables in place
    python tools/render_tables.py --check   # do the pages agree with the ledger?
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from resnet_cifar.machine import describe
from resnet_cifar_lab.ledger import LEDGER, read_ledger

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "configs").glob("*.yaml"))]
CARD = ROOT / "src" / "resnet_cifar" / "weights" / "robust.json"
MEASURED = re.compile(r"^# measured:.*\n(?:# measured:.*\n)*", re.M)
MARKER = re.compile(r"(<!-- table:([\w-]+) -->\n)(.*?)(<!-- /table:\2 -->)", re.S)


def machine(entry: dict) -> str:
    """The record's machine as users know it (resnet_cifar.machine.describe: one formatter for every page)."""
    return describe(entry["machine"])


def mean_std(values: list[float | None], scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    known = [value * scale for value in values if value is not None]
    if not known:
        return "—"
    if len(known) == 1:
        return f"{known[0]:,.{digits}f}{unit}"
    return f"{statistics.mean(known):,.{digits}f} ± {statistics.stdev(known):,.{digits}f}{unit}"


def seeds(entry: dict) -> str:
    numbers = entry["seeds"]
    if len(numbers) > 2 and numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}–{numbers[-1]}"
    return ", ".join(map(str, numbers))


def seed_label(entry: dict) -> str:
    return f"seed{'s' if len(entry['seeds']) > 1 else ''} {seeds(entry)}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 100 else f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def latest_per_machine(records: list[dict], benchmark: str, config: bool = False) -> list[dict]:
    """The newest record of `benchmark` for each machine kind (CPU name and ISA) and precision (and config, when
    `config`), oldest kind first."""
    chosen: dict[tuple, dict] = {}
    for entry in records:
        if entry["benchmark"] == benchmark:
            chosen[(entry["config"] if config else None, machine(entry), entry["precision"])] = entry
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


def as_repeat_runs(entry: dict) -> dict:
    """A side-by-side `make train` record as the repeated runs of this checkout's config it also is."""
    numbers = {key: entry["numbers"]["this"][key] for key in ("test_acc", "wall_s")}
    return {**entry, "benchmark": "repeat_runs", "config": entry["numbers"]["configs"]["this"], "numbers": numbers}


def latest_runs(records: list[dict], configs: list[str] | None = None) -> list[dict]:
    """The newest repeated runs per config, machine kind and precision, in the order of `configs`."""
    records = [as_repeat_runs(e) if e["benchmark"] == "make_train_side_by_side" else e for e in records]
    runs = latest_per_machine(records, "repeat_runs", config=True)
    order = {name: index for index, name in enumerate(configs or [])}
    chosen = [entry for entry in runs if configs is None or entry["config"] in order]
    return sorted(chosen, key=lambda entry: order.get(entry["config"], 0))


def run_row(entry: dict) -> str:
    numbers = entry["numbers"]
    wall = [value for value in numbers["wall_s"] if value is not None]
    whole = (
        mean_std(wall, digits=1, unit=" s")
        if len(wall) == len(numbers["wall_s"])
        else (f"{wall[0]:.1f} s (a separate run of seed {entry['seeds'][0]} alone)" if wall else "—")
    )
    return (
        f"| `{entry['config'].removeprefix('configs/')}` | {machine(entry)} | {entry['precision']} | {seeds(entry)} | "
        f"**{mean_std(numbers['test_acc'], 100, 2, '%')}** | {whole} | {entry['date']} |"
    )


RUN_HEADER = [
    "| config | machine | precision | seeds | test accuracy | whole command | date |",
    "| --- | --- | --- | --- | ---: | ---: | --- |",
]


def recipes(records: list[dict]) -> list[str]:
    """Every live or archived config's newest repeated runs per machine kind (configs since removed are left out)."""
    runs = [entry for entry in latest_runs(records) if (ROOT / entry["config"]).is_file()]
    return [*RUN_HEADER, *(run_row(entry) for entry in sorted(runs, key=lambda entry: entry["config"]))]


HEADLINE = [
    "configs/fast80.yaml",
    "configs/cpu94-bf16.yaml",
    "configs/cpu94-avx2.yaml",
    "configs/cpu94.yaml",
    "configs/subset5k.yaml",
    "configs/gpu94.yaml",
]


def headline(records: list[dict]) -> list[str]:
    return [*RUN_HEADER, *(run_row(entry) for entry in latest_runs(records, HEADLINE))]


def two_commands(records: list[dict]) -> list[str]:
    """The README's two commands per machine kind: the newest first run (it creates .venv) and repeated run."""
    lines = [
        "| machine | run | precision | `make train` | its test accuracy | `make test` | tests passed | date |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    chosen: dict[tuple, dict] = {}
    for entry in records:
        if entry["benchmark"] == "two_commands":
            chosen[(machine(entry), entry["precision"], bool(entry["numbers"].get("venv_made")))] = entry
    for (_, _, first), entry in sorted(chosen.items(), key=lambda item: (item[0][0], not item[0][2])):
        numbers = entry["numbers"]
        lines.append(
            f"| {machine(entry)} | {'first (creates .venv)' if first else 'repeated'} | {entry['precision']} | "
            f"{duration(numbers.get('make_train_s'))} | {numbers['test_accuracy'] * 100:.2f}% | "
            f"{duration(numbers.get('make_test_s'))} | {numbers.get('tests_passed', '—')} | {entry['date']} |"
        )
    return lines


def make_train_side_by_side(records: list[dict]) -> list[str]:
    """`make train` against the previous recipe's, per machine kind, from benchmarks/make_train_side_by_side.py."""
    lines = [
        "| machine, precision | `make train` now | its test accuracy | before | its test accuracy | now / before "
        "| seeds, date |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for entry in latest_per_machine(records, "make_train_side_by_side"):
        now, before = entry["numbers"]["this"], entry["numbers"]["against"]
        lines.append(
            f"| {machine(entry)}, {entry['precision']} | {mean_std(now['wall_s'], unit=' s')} "
            f"| {mean_std(now['test_acc'], 100, 2, '%')} | {mean_std(before['wall_s'], unit=' s')} "
            f"| {mean_std(before['test_acc'], 100, 2, '%')} | **{entry['numbers']['ratio']:.2f}** "
            f"| {seeds(entry)}, {entry['date']} |"
        )
    configs = {
        entry["numbers"]["configs"]["against"] for entry in records if entry["benchmark"] == "make_train_side_by_side"
    }
    commits = {
        entry["numbers"]["against_commit"] for entry in records if entry["benchmark"] == "make_train_side_by_side"
    }
    before = ", ".join(name.removeprefix("configs/") for name in sorted(configs))
    commit = ", ".join(sorted(map(str, commits)))
    command = "`python benchmarks/make_train_side_by_side.py --against ../previous`"
    return [*lines, "", f"before: `make train` of commit {commit} (its {before}); {command}"]


PHASE_COLUMNS = {
    "startup_and_rest_s": "start-up and rest",
    "data_s": "data",
    "setup_s": "set-up",
    "train_s": "training",
    "validation_s": "validation",
    "test_s": "test pass",
    "pictures_s": "pictures",
}


def make_train_phases(records: list[dict]) -> list[str]:
    """Where `make train` spends its time now and before, per machine kind: the mean seconds of each phase over the
    seeds of the newest side-by-side record that timed them, and the share of the whole command that is not training."""
    lines = [
        f"| machine, precision | `make train` | {' | '.join(PHASE_COLUMNS.values())} | not training |",
        "| --- | --- |" + " ---: |" * (len(PHASE_COLUMNS) + 1),
    ]
    timed = [entry for entry in records if "phases" in entry["numbers"].get("this", {})]
    for entry in latest_per_machine(timed, "make_train_side_by_side"):
        for name, label in (("this", "now"), ("against", "before")):
            runs = entry["numbers"][name]
            phases = {key: statistics.mean(runs["phases"][key]) for key in PHASE_COLUMNS}
            whole = statistics.mean(runs["wall_s"])
            cells = " | ".join(f"{phases[key]:.2f} s" for key in PHASE_COLUMNS)
            lines.append(
                f"| {machine(entry)}, {entry['precision']} | {label}: {whole:.1f} s | {cells} "
                f"| **{1 - phases['train_s'] / whole:.0%}** |"
            )
    return [*lines, "", "Means over the seeds of the side-by-side table above, from the same runs."]


def limit(records: list[dict]) -> list[str]:
    """Each recipe's training step against this machine's own arithmetic rate, from benchmarks/limit.py."""
    lines = [
        "| machine | matrix product 4096², GFLOP/s | recipe, precision, batch | window | training step, images/s "
        "| step, GFLOP/s | step / matrix product | step / its largest convolution | date |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for entry in latest_per_machine(records, "limit"):
        peaks = entry["numbers"]["peaks_gflops"]
        peak = " / ".join(f"{name.split('_')[1]} {value:,.0f}" for name, value in peaks.items())
        for path, row in entry["numbers"]["recipes"].items():
            for size, step in row["steps"].items():
                lines.append(
                    f"| {machine(entry)} | {peak} | `{path.removeprefix('configs/')}`, {row['precision']}, "
                    f"{row['batch']} | {size} px | {step['images_per_s']:,.0f} | {step['gflops']:,.1f} "
                    f"| **{step['of_matmul']:.2f}** | {step['of_conv']:.2f} | {entry['date']} |"
                )
    return lines


def shipped_weights(records: list[dict]) -> list[str]:
    card = json.loads(CARD.read_text())
    accuracy, robustness = card["test_accuracy"], card["robustness"]
    validation = card["calibration"].get("test", card["calibration"]["validation"])
    return [
        "| parameters | test accuracy: single view / flip TTA | mean accuracy under 14 corruptions × 5 severities "
        "| relative drop | ECE before → after temperature |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {card['parameters'] / 1e6:.2f}M | {accuracy['no_tta'] * 100:.2f}% / {accuracy['tta_flip'] * 100:.2f}% | "
        f"{robustness['mean_corruption_accuracy'] * 100:.2f}% | {robustness['relative_drop'] * 100:.1f}% | "
        f"{validation['ece_before']:.3f} → {validation['ece_after']:.3f} |",
    ]


def whole_command(wall: list[float | None]) -> str:
    return mean_std(wall, digits=0, unit=" s") if None not in wall else "—"


def measured_lines(config: Path, records: list[dict]) -> str:
    lines = []
    for entry in latest_runs(records, [f"configs/{config.name}"]):
        accuracy = mean_std(entry["numbers"]["test_acc"], 100, 2, "%")
        where = f"{machine(entry)}, {entry['precision']} ({entry['date']})"
        lines.append(
            f"# measured: {accuracy} test accuracy, {whole_command(entry['numbers']['wall_s'])} whole command, "
            f"{seed_label(entry)}; {where}\n"
        )
    return "".join(lines)


def grid_sweeps(records: list[dict], grid: str) -> list[dict]:
    """The ledger's whole (ranked) sweeps of `grid`, oldest first."""
    return [entry for entry in records if entry["benchmark"] == "sweep" and entry["numbers"]["grid"] == grid]


def sweep_candidates(records: list[dict], grid: str) -> dict[str, dict]:
    """The newest record of each finished candidate of `grid` (benchmarks/sweep.py records each as it finishes)."""
    found = (entry for entry in records if entry["benchmark"] == "sweep candidate")
    return {entry["numbers"]["candidate"]["name"]: entry for entry in found if entry["numbers"]["grid"] == grid}


def candidate_record(candidates: dict[str, dict], row: dict) -> dict | None:
    found = candidates.get(row["name"])
    return found if found is not None and found["numbers"]["candidate"] == row else None


def sweep_table(records: list[dict], grid: str) -> list[str]:
    """The newest sweep of `grid`: its candidates ranked by validation accuracy, with where and how each ran; while
    the sweep is under way, the candidates finished so far."""
    sweeps = grid_sweeps(records, grid)
    candidates = sweep_candidates(records, grid)
    if sweeps:
        entry, note = sweeps[-1], None
        rows = entry["numbers"]["candidates"]
        # each candidate where its own record says it ran (a sweep continued on another machine), else where the
        # sweep ran (a sweep recorded before candidates had records of their own)
        ran = {row["name"]: candidate_record(candidates, row) or entry for row in rows}
    elif candidates:
        entry = list(candidates.values())[-1]
        rows = sorted((found["numbers"]["candidate"] for found in candidates.values()), key=lambda row: -row["val_acc"])
        ran = {row["name"]: candidates[row["name"]] for row in rows}
        total = len(yaml.safe_load((ROOT / grid).read_text())["candidates"])
        note = f"{len(rows)} of {total} candidates finished so far; the rest are still to run."
    else:
        return [f"(no sweep of {grid} in the ledger)"]
    where = {name: f"{machine(found)}, {found['precision']}, {found['date']}" for name, found in ran.items()}
    one_machine = len({machine(found) + found["precision"] for found in ran.values()}) == 1
    column = "" if one_machine else " machine, precision, date |"
    lines = [
        f"| candidate | validation accuracy | with flip TTA | epochs | training hours per candidate |{column}",
        f"| --- | ---: | ---: | ---: | ---: |{' --- |' if column else ''}",
    ]
    for row in rows:
        lines.append(
            f"| {row['name']} | {row['val_acc'] * 100:.2f}% | {row['tta_val_acc'] * 100:.2f}% | {row['epochs']} | "
            f"{row['train_s'] / 3600:.1f} |" + ("" if one_machine else f" {where[row['name']]} |")
        )
    lines.append("")
    if note:
        lines += [note, ""]
    first = next(iter(ran.values()))
    place = f"{machine(first)}, {first['precision']}, " if one_machine else ""
    lines.append(f"{place}{seed_label(entry)}, {entry['date']}: `{entry['command']}`")
    return lines


def grid_commands(records: list[dict], grid: str) -> list[str]:
    """The command of the newest whole sweep of `grid`, else those its finished candidates ran with."""
    sweeps = grid_sweeps(records, grid)
    if sweeps:
        return [sweeps[-1]["command"]]
    return list(dict.fromkeys(entry["command"] for entry in sweep_candidates(records, grid).values()))


def seed_spread(records: list[dict], grids: list[str]) -> list[str]:
    """The candidates of `grids` over seeds: `NAME` and `NAME-seedK` (a seeds round repeating a candidate of another
    round with seed K) are one candidate; mean ± std of its validation accuracies, best first."""
    runs: dict[str, list[dict]] = {}
    for grid in grids:
        for name, entry in sweep_candidates(records, grid).items():
            runs.setdefault(re.sub(r"-seed\d+$", "", name), []).append(entry)
    if not runs:
        return [f"(no candidate of {', '.join(grids)} in the ledger)"]

    def accuracies(entries: list[dict], key: str) -> list[float]:
        return [entry["numbers"]["candidate"][key] for entry in entries]

    ranked = sorted(runs.items(), key=lambda item: -statistics.mean(accuracies(item[1], "val_acc")))
    lines = [
        "| candidate | seeds | validation accuracy | with flip TTA |",
        "| --- | --- | ---: | ---: |",
    ]
    for name, entries in ranked:
        seeds = ", ".join(str(seed) for seed in sorted(seed for entry in entries for seed in entry["seeds"]))
        lines.append(
            f"| {name} | {seeds} | {mean_std(accuracies(entries, 'val_acc'), 100, 2, '%')} | "
            f"{mean_std(accuracies(entries, 'tta_val_acc'), 100, 2, '%')} |"
        )
    entries = [entry for found in runs.values() for entry in found]
    places = dict.fromkeys(f"{machine(entry)}, {entry['precision']}" for entry in entries)  # in the grids' order
    commands = dict.fromkeys(command for grid in grids for command in grid_commands(records, grid))
    return [*lines, "", f"{'; '.join(places)}: " + "; ".join(f"`{command}`" for command in commands)]


def depth_of(net: str) -> int:
    return int("".join(ch for ch in net.split("-")[0] if ch.isdigit()))


def caption(entry: dict) -> str:
    seeded = f", {seed_label(entry)}" if entry["seeds"] else ""
    return f"{machine(entry)}, {entry['precision']}{seeded}, {entry['date']}: `{entry['command']}`"


def newest(records: list[dict], benchmark: str) -> dict | None:
    found = [entry for entry in records if entry["benchmark"] == benchmark]
    return found[-1] if found else None


def from_newest(benchmark: str, what: str) -> Callable:
    """A table rendered from the newest record of `benchmark` (a note where the ledger has none)."""

    def wrap(render: Callable[[dict], list[str]]) -> Callable[[list[dict]], list[str]]:
        def table(records: list[dict]) -> list[str]:
            entry = newest(records, benchmark)
            return [f"(no {what} in the ledger)"] if entry is None else render(entry)

        return table

    return wrap


@from_newest("experiment gradient-flow", "gradient-flow study")
def gradient_flow(entry: dict) -> list[str]:
    steps = entry["numbers"]["steps"]
    lines = [
        f"| net | batch norm | first / last conv gradient norm, init | after {steps} steps "
        f"| loss, init → after {steps} steps |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    nets = entry["numbers"]["nets"]  # batch norm first, then plain before residual, shallow before deep

    def order(label: str) -> tuple:
        return (nets[label]["norm"] != "bn", not label.startswith("plain"), depth_of(label))

    for label in sorted(nets, key=order):
        net = nets[label]
        lines.append(
            f"| {label.replace('-nobn', '')} | {'yes' if net['norm'] == 'bn' else 'no'} | "
            f"{net['first_to_last_init']:.3g} | {net['first_to_last_trained']:.3g} | "
            f"{net['loss_init']:.3g} → {net['loss_trained']:.3g} |"
        )
    return [*lines, "", caption(entry)]


@from_newest("experiment degradation", "degradation study")
def degradation(entry: dict) -> list[str]:
    nets = entry["numbers"]["nets"]
    lines = [
        "| depth | plain: training error | plain: test error | ResNet: training error | ResNet: test error |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for depth in sorted({depth_of(name) for name in nets}):
        plain, residual = nets.get(f"plain{depth}", {}), nets.get(f"resnet{depth}", {})
        cells = [
            f"{net[key]:.2%}" if key in net else "—"
            for net in (plain, residual)
            for key in ("train_error", "test_error")
        ]
        lines.append(f"| {depth} | " + " | ".join(cells) + " |")
    return [*lines, "", f"{entry['numbers']['epochs']:g} epochs per net; " + caption(entry)]


@from_newest("experiment data-efficiency", "data-efficiency study")
def data_efficiency(entry: dict) -> list[str]:
    summary = entry["numbers"]["summary"]
    lines = [
        "| training images | epochs (same steps) | residual: test acc. | plain twin: test acc. | residual − plain |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for residual, plain in zip(summary["residual"], summary["plain"], strict=True):
        lines.append(
            f"| {residual['train_size']:,} | {residual['epochs']:.3g} | "
            f"{residual['mean']:.2%} ± {residual['std'] * 100:.2f} | {plain['mean']:.2%} ± {plain['std'] * 100:.2f} | "
            f"{(residual['mean'] - plain['mean']) * 100:+.1f} pt |"
        )
    return [*lines, "", f"{entry['numbers']['budget']}; " + caption(entry)]


def rates(numbers: dict, mode: str) -> str:
    """fp32 / fp32 + channels-last / bf16 / bf16 + channels-last images per second, "—" where not measured."""
    table = numbers["images_per_s"].get(mode, {})
    cells = [table.get(p, {}).get(layout) for p in ("fp32", "bf16") for layout in ("contiguous", "channels_last")]
    if not any(cells):
        return "—"
    return " / ".join("—" if cell is None else f"{cell:,.0f}" for cell in cells)


def is_fastnet_default(entry: dict) -> bool:
    numbers = entry["numbers"]
    return numbers["model"] == "fastnet" and numbers["model_options"].get("widths") == [32, 64, 128]


def throughput(records: list[dict]) -> list[str]:
    lines = [
        "| machine | training, images/s: fp32 / fp32 + channels-last / bf16 / bf16 + channels-last "
        "| inference, the same | our loop vs a bare one | date |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for entry in latest_per_machine(
        [e for e in records if e["benchmark"] == "throughput" and is_fastnet_default(e)], "throughput"
    ):
        numbers = entry["numbers"]
        loop = numbers.get("loop_vs_bare")
        lines.append(
            f"| {machine(entry)} | {rates(numbers, 'train')} | {rates(numbers, 'inference')} | "
            f"{'—' if loop is None else f'{loop:.2f}'} | {entry['date']} |"
        )
    return lines


def seconds_summary(numbers: dict, key: str) -> str:
    if numbers.get(key) is not None:
        return mean_std(numbers[key], digits=1, unit=" s")
    return (
        f"{numbers[key + '_mean']:.1f} ± {numbers[key + '_std']:.1f} s"
        if key + "_std" in numbers
        else (f"{numbers[key + '_mean']:.0f} s")
    )


def mean_of(numbers: dict, key: str) -> float:
    values = numbers.get(key)
    return statistics.mean(values) if values else numbers[key + "_mean"]


def yardsticks(records: list[dict]) -> list[str]:
    lines = [
        "| comparison, side by side in one run | machine, precision | result | date |",
        "| --- | --- | --- | --- |",
    ]
    compared = {}
    for entry in records:  # the newest comparison of each pair of configs
        if entry["benchmark"] == "time_to_accuracy" and entry["numbers"].get("baseline"):
            compared[(entry["numbers"]["config"], entry["numbers"]["baseline"])] = entry
    for (config, baseline), entry in compared.items():
        numbers = entry["numbers"]
        ratio = mean_of(numbers, "baseline_seconds") / mean_of(numbers, "seconds")
        lines.append(
            f"| `{config}` vs `{baseline}`, time to {numbers['target']:.0%} test accuracy, {seed_label(entry)} "
            f"| {machine(entry)}, {entry['precision']} | {seconds_summary(numbers, 'seconds')} vs "
            f"{seconds_summary(numbers, 'baseline_seconds')}: **{ratio:.2f}×** | {entry['date']} |"
        )
    for entry in latest_per_machine(
        [e for e in records if e["benchmark"] == "throughput" and is_fastnet_default(e)], "throughput"
    ):
        train = entry["numbers"]["images_per_s"]["train"]
        where = f"| {machine(entry)} | "
        if entry["numbers"].get("loop_vs_bare") is not None:
            lines.append(
                "| our training loop vs a bare PyTorch loop, same model and work (`benchmarks/throughput.py`) "
                f"{where}{entry['numbers']['loop_vs_bare']:.2f}× | {entry['date']} |"
            )
        if "bf16" in train:
            best, plain = train["bf16"]["channels_last"], train["fp32"]["contiguous"]
            lines.append(
                "| bf16 + channels-last vs fp32 contiguous, fastnet 32-64-128 training (`benchmarks/throughput.py`) "
                f"{where}{best:,.0f} vs {plain:,.0f} images/s: **{best / plain:.2f}×** | {entry['date']} |"
            )
    return lines


@from_newest("robustness_comparison", "robustness comparison")
def robustness_comparison(entry: dict) -> list[str]:
    from resnet_cifar_lab.summaries import comparison_rows

    reports = {column["name"]: column for column in entry["numbers"]["columns"]}
    images = sorted({summary["images"] for summary in reports.values()})
    where = f"{images[0]:,} test images" if len(images) == 1 else f"test images {images}"
    return [*comparison_rows(reports), "", f"{where}; " + caption(entry)]


@from_newest("cam_summary", "class-activation summary")
def cam_summary(entry: dict) -> list[str]:
    from resnet_cifar_lab.summaries import cam_table

    numbers = entry["numbers"]
    return [
        *cam_table(numbers["per_class"]),
        "",
        f"{numbers['weights']}, {numbers['images']:,} test images; " + caption(entry),
    ]


def depth_study(records: list[dict]) -> tuple[dict | None, dict]:
    """The record of the whole depth study (configs/paper-resnets.yaml) where it is finished, else None; and the
    study as the ledger's per-net records hold it (the nets finished so far)."""
    from resnet_cifar.experiments.depth import run_name, study_runs
    from resnet_cifar.experiments.settings import DepthSettings
    from resnet_cifar_lab.depth_study import from_ledger

    settings = DepthSettings(config=str(ROOT / "configs" / "paper-resnets.yaml"))
    whole = {run_name(net, seed) for net, seed in study_runs(settings)}
    studies = [e for e in records if e["benchmark"] == "experiment depth" and set(e["numbers"]["nets"]) == whole]
    return (studies[-1] if studies else None), from_ledger(settings, records)  # a study of some nets is not the study


def depth_steps(study: dict) -> dict[str, str]:
    """Each claim's evidence in words: the seeds behind each depth, the smallest and largest step, and the largest
    spread of seeds measured, so a verdict is read with what it rests on."""
    from resnet_cifar_lab.depth_study import table6 as rows_of

    words = {}
    for kind, key in (("resnet", "test_error"), ("plain", "train_error")):
        rows = rows_of(study, kind)
        steps = [abs(b[key] - a[key]) for a, b in itertools.pairwise(rows)]
        spreads = [row[f"{key}_std"] for row in rows if row[f"{key}_std"] is not None]
        seeds = ", ".join(f"{row['net']}: {len(row['seeds'])}" for row in rows)
        spread = f"; seed spread (std) at most {max(spreads):.2f}" if spreads else "; one seed per depth"
        span = f"steps of {min(steps):.2f}–{max(steps):.2f} points" if steps else "one depth"
        words[kind] = f"{span}{spread} (seeds per net: {seeds})"
    return words


def depth_thesis(records: list[dict]) -> list[str]:
    """The README's summary of the depth study: the paper's two claims, the errors measured here (single view, mean
    over the seeds run), the verdicts, and what each rests on."""
    from resnet_cifar_lab.depth_study import CLAIMS, thesis

    entry, study = depth_study(records)
    measured, evidence = thesis(study), depth_steps(study)
    lines = ["| the paper's claim (He et al. 2015, Table 6 and Fig. 6) | depths | measured here | holds | on |"]
    lines.append("| --- | --- | ---: | --- | --- |")
    for (what, errors_key, holds_key), kind in zip(CLAIMS, ("resnet", "plain"), strict=True):
        errors, holds = measured[errors_key], measured[holds_key]
        depths = " → ".join(str(depth) for depth in errors) or "–"
        steps = " → ".join(f"{float(error):.2f}" for error in errors.values())
        answer = {True: "at every step", False: "**no**", None: "not yet (fewer than two depths)"}[holds]
        lines.append(f"| {what} | {depths} | {steps + '%' if steps else '–'} | {answer} | {evidence[kind]} |")
    if entry is not None:
        return [*lines, "", study_caption(entry)]
    done, total = len(study["nets"]), len(study["nets"]) + len(study["missing"])
    epochs = "/".join(sorted({f"{net['epochs']:g}" for net in study["nets"].values()})) or "–"
    return [
        *lines,
        "",
        f"{done} of {total} nets of the study finished so far ({epochs} epochs each; machines, seeds and hours in "
        f"Table 6); not yet: {', '.join(study['missing'])}.",
    ]


def study_caption(entry: dict) -> str:
    """A finished study's caption: its nets trained on the machines named per net, the study's one command."""
    return f"{entry['precision']}, {seed_label(entry)}, each net on the machine its row names: `{entry['command']}`"


def table6(records: list[dict]) -> list[str]:
    """He et al. Table 6 reproduced from the ledger's records of the nets: the ResNets' single-view test error beside
    the paper's single view, flip TTA as an extra, then the plain nets' training and test error; mean ± std over the
    seeds run, and the machines each net trained on."""
    from resnet_cifar.experiments.depth import run_name
    from resnet_cifar_lab.depth_study import NET_RECORD, thesis

    entry, study = depth_study(records)
    if not study["nets"]:
        return ["(no net of the depth study in the ledger yet)"]
    verdicts = [f"- {line}" for line in thesis_lines(thesis(study), depth_steps(study))]
    tables = [*table6_lines(study), "", *plain_lines(study), "", *verdicts, ""]
    if entry is not None:
        return [*tables, study_caption(entry)]
    where = {}
    for one in records:
        if one["benchmark"] == NET_RECORD:
            result = one["numbers"]["result"]
            where[run_name(result["net"], result["seed"])] = f"{machine(one)}, {one['precision']}, {one['date']}"
    nets_by_place: dict[str, list[str]] = {}
    for name in study["nets"]:
        nets_by_place.setdefault(where[name], []).append(name)
    return [
        *tables,
        f"The study so far: {len(study['nets'])} of {len(study['nets']) + len(study['missing'])} nets "
        f"(not finished yet: {', '.join(study['missing'])}), each recorded as it finished: "
        + "; ".join(f"{', '.join(names)} on {place}" for place, names in nets_by_place.items())
        + ". `resnet-cifar experiment depth --out DIR` trains the rest.",
    ]


def thesis_lines(measured: dict, evidence: dict[str, str]) -> list[str]:
    """The verdicts in words, each with the errors it rests on and how many seeds stand behind them."""
    from resnet_cifar_lab.depth_study import CLAIMS

    def line(errors: dict, what: str, holds: bool | None, kind: str) -> str:
        if not errors:
            return f"{what}: not yet measured (no net finished)"
        steps = " → ".join(f"{float(error):.2f}" for error in errors.values())
        depths = "/".join(str(depth) for depth in errors)
        answer = {True: "at every step", False: "no", None: "not yet measured (fewer than two depths)"}[holds]
        return f"{what} ({depths}): {steps}%: {answer}; {evidence[kind]}"

    return [
        line(measured[errors], what, measured[holds], kind)
        for (what, errors, holds), kind in zip(CLAIMS, ("resnet", "plain"), strict=True)
    ]


def _error(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _paper(row: dict, source: str) -> str:
    from resnet_cifar_lab.depth_study import PAPER_110_MEAN

    value = row[source]
    if value is None:
        return "–"
    if source == "He et al. 2015" and row["net"] == "resnet110":  # the paper's 110 is its best of 5 runs
        return f"{value:.2f} (best of 5; mean {PAPER_110_MEAN[0]:.2f} ± {PAPER_110_MEAN[1]:.2f})"
    return f"{value:.2f}"


def table6_lines(results: dict) -> list[str]:
    """Table 6 as Markdown: single view against the published single views, flip TTA after them as an extra."""
    from resnet_cifar_lab.depth_study import ANCHORS
    from resnet_cifar_lab.depth_study import table6 as table6_rows

    sources = list(ANCHORS)
    lines = [
        "| net | seeds | test error %, single view | " + " | ".join(f"{source} %" for source in sources)
        + " | extra: flip TTA % | epochs | hours each | trained on |",
        "| --- | --- | ---: |" + " ---: |" * len(sources) + " ---: | ---: | ---: | --- |",
    ]  # fmt: skip
    for row in table6_rows(results):
        anchors = " | ".join(_paper(row, source) for source in sources)
        seeds_run = ", ".join(map(str, row["seeds"]))
        lines.append(
            f"| {row['net']} | {seeds_run} | {_error(row['test_error'], row['test_error_std'])} "
            f"| {anchors} | {_error(row['test_error_tta'], row.get('test_error_tta_std'))} "
            f"| {row['epochs']} | {row['cpu_hours']:.2f} | {'; '.join(row.get('trained_on', [])) or '–'} |"
        )
    return lines


def plain_lines(results: dict) -> list[str]:
    """The plain twins: final training error (the last epoch's augmented batches) and test error, single view."""
    from resnet_cifar_lab.depth_study import table6 as table6_rows

    lines = [
        "| plain net | seeds | training error %, last epoch | test error %, single view | epochs | hours each "
        "| trained on |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in table6_rows(results, "plain"):
        seeds_run = ", ".join(map(str, row["seeds"]))
        lines.append(
            f"| {row['net']} | {seeds_run} | {_error(row['train_error'], row['train_error_std'])}"
            f" | {_error(row['test_error'], row['test_error_std'])} | {row['epochs']} | {row['cpu_hours']:.2f} "
            f"| {'; '.join(row.get('trained_on', [])) or '–'} |"
        )
    return lines


RUNTIME_NAMES = {
    "pytorch fp32": "PyTorch fp32",
    "pytorch bf16": "PyTorch bf16 autocast",
    "onnxruntime fp32": "ONNX Runtime fp32",
}


def inference(records: list[dict]) -> list[str]:
    """`benchmarks/inference.py` per machine kind: throughput and single-image latency of each runtime."""
    lines = [
        "| machine | weights | runtime | images/s at batch 256 | single-image latency, median | p99 | date |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for entry in latest_per_machine(records, "inference"):
        numbers = entry["numbers"]
        threads = f"{numbers['threads']} thread{'' if numbers['threads'] == 1 else 's'}"
        where = f"| {machine(entry)}, {threads} | {numbers['weights']} "
        for name in sorted(numbers["runtimes"], key=list(RUNTIME_NAMES).index):
            row = numbers["runtimes"][name]
            lines.append(
                f"{where}| {RUNTIME_NAMES[name]} | {row['images_per_s']:,.0f} | {row['median_ms']:.2f} ms | "
                f"{row['p99_ms']:.2f} ms | {entry['date']} |"
            )
    return lines


@from_newest("published_weights", "test of published weights")
def published_weights(entry: dict) -> list[str]:
    """akamaster's published weights imported and tested here, beside its README and the paper (test error, %)."""
    from resnet_cifar_lab.depth_study import ANCHORS

    lines = [
        "| model | akamaster README error | ours with their weights (zeros split, as imported) | "
        "ours, zeros after the identity | difference to README | He et al. 2015 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    measured = entry["numbers"]["test_error_percent"]
    for model in sorted(measured, key=depth_of):
        row, depth = measured[model], depth_of(model)
        readme, paper = ANCHORS["akamaster"].get(depth), ANCHORS["He et al. 2015"].get(depth)
        gap = f"{row['split'] - readme:+.2f}" if readme is not None else "–"
        lines.append(f"| {model} | {readme:.2f}% | {row['split']:.2f}% | {row['after']:.2f}% | {gap} | {paper:.2f}% |")
    return [*lines, "", caption(entry)]


def paper_weights(records: list[dict]) -> list[str]:
    """The paper ResNets shipped by name, from their model cards (every number measured on the stored tensors)."""
    lines = [
        "| name | parameters | test accuracy: single view / flip TTA | He et al. 2015 | ECE before → after temperature "
        "| storage | epochs | training | trained with |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    from resnet_cifar_lab.depth_study import ANCHORS

    for card_path in sorted(CARD.parent.glob("resnet*.json"), key=lambda path: depth_of(path.stem)):
        card = json.loads(card_path.read_text())
        accuracy, test = card["test_accuracy"], card["calibration"]["test"]
        training = card["training"]
        paper = 100 - ANCHORS["He et al. 2015"][depth_of(card["model"])]
        lines.append(
            f"| `{card_path.stem}` | {card['parameters']:,} | {accuracy['no_tta']:.2%} / {accuracy['tta_flip']:.2%} | "
            f"{paper:.2f}% | {test['ece_before']:.3f} → {test['ece_after']:.3f} | {stored_as(card)} | "
            f"{card['config']['epochs']:g} | {where_trained(training)} | `{card['command']}` |"
        )
    return lines


def stored_as(card: dict) -> str:
    """`float16: 90.79% (float32: 90.78%), 3 of 10,000 predictions changed` where the card measured both."""
    check = card.get("storage_check")
    if not check:
        return card["storage"]
    return (
        f"{card['storage']}: {check['stored_no_tta']:.2%} (float32: {check['trained_float32_no_tta']:.2%}), "
        f"{check['predictions_changed']} of {card['test_accuracy']['images']:,} predictions changed"
    )


def where_trained(training: dict) -> str:
    """`1.4 h, fp32, AMD EPYC (...), AVX2, 2 cores, 2 torch threads`, or the hours on each machine of a moved run."""
    by_machine = training.get("hours_by_machine")
    if not by_machine:
        return f"{training['hours']:.1f} h, {training['precision']}, {', '.join(training['machine'].split(', ')[:4])}"
    return "; ".join(f"{hours:.1f} h on {machine}" for machine, hours in by_machine.items())


def gpu_runs(records: list[dict]) -> list[str]:
    """The live recipes' repeated runs on a GPU."""
    return [*RUN_HEADER, *(run_row(entry) for entry in latest_runs(records) if "gpu" in entry["machine"])]


TABLES: dict[str, Callable[[list[dict]], list[str]]] = {
    "table6": table6,
    "depth-thesis": depth_thesis,
    "gpu-runs": gpu_runs,
    "make-train-side-by-side": make_train_side_by_side,
    "make-train-phases": make_train_phases,
    "fast80-fewer-flops-seeds": lambda records: seed_spread(
        records, ["benchmarks/grids/fast80-fewer-flops.yaml", "benchmarks/grids/fast80-fewer-flops-seeds.yaml"]
    ),
    "cpu94-avx2-epochs": lambda records: sweep_table(records, "benchmarks/grids/cpu94-avx2-epochs.yaml"),
    "limit": limit,
    "paper-weights": paper_weights,
    "published-weights": published_weights,
    "inference": inference,
    "cam-summary": cam_summary,
    "robustness-comparison": robustness_comparison,
    "throughput": throughput,
    "yardsticks": yardsticks,
    "gradient-flow": gradient_flow,
    "degradation": degradation,
    "data-efficiency": data_efficiency,
    "paper-resnets-regularisation": lambda records: sweep_table(
        records, "benchmarks/grids/paper-resnets-regularisation.yaml"
    ),
    "paper-resnets-each-choice": lambda records: sweep_table(
        records, "benchmarks/grids/paper-resnets-each-choice.yaml"
    ),
    "paper-resnets-each-choice-seeds": lambda records: seed_spread(
        records,
        ["benchmarks/grids/paper-resnets-each-choice.yaml", "benchmarks/grids/paper-resnets-each-choice-seeds.yaml"],
    ),
    "serve-load": serve_load,
    "two-commands": two_commands,
    "headline": headline,
    "recipes": recipes,
    "shipped-weights": shipped_weights,
}


def render(text: str, records: list[dict], page: Path | None = None) -> str:
    if page is not None and page.suffix == ".yaml":
        lines = measured_lines(page, records)
        return MEASURED.sub(lambda match: lines or match.group(0), text, count=1)

    def replace(match: re.Match) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"unknown table {name!r} (known: {', '.join(TABLES)})")
        return match.group(1) + "\n".join(TABLES[name](records)) + "\n" + match.group(4)

    return MARKER.sub(replace, text)


def stale_pages(records: list[dict], pages: list[Path] = PAGES) -> list[Path]:
    return [page for page in pages if page.is_file() and render(page.read_text(), records, page) != page.read_text()]


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
        page.write_text(render(page.read_text(), records, page))
        print(f"rendered {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
