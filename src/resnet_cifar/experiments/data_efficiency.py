"""How much data does a residual network need? Test accuracy against the size of a class-balanced training subset, for
a residual net and its plain twin, every point with the same budget of steps (a small subset is seen more often).
Subsets are nested per seed and differ between seeds, so the spread includes which images were drawn. Each finished
point is written to OUT/points/ at once: an interrupted experiment continues, and several processes can fill one
folder side by side."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from resnet_cifar.config import load_config
from resnet_cifar.evaluate.metrics import accuracy
from resnet_cifar.experiments.settings import KINDS, DataEfficiencySettings, twin
from resnet_cifar.experiments.study_reports import AGAIN, NetProgress, ReportError, write_report
from resnet_cifar.experiments.subruns import as_it_began, continue_from_checkpoint, held
from resnet_cifar.files import atomic_write_bytes
from resnet_cifar.run_folder import training_seconds
from resnet_cifar.runtime import Runtime
from resnet_cifar.train.loop import Trainer


def point_name(kind: str, size: int, seed: int) -> str:
    return f"{kind}-{size}-s{seed}"


def train_point(kind: str, size: int, seed: int, settings: DataEfficiencySettings, out: Path, test, runtime) -> dict:
    model, options = twin(settings.model, settings.model_options, kind)
    name = point_name(kind, size, seed)
    config = load_config(
        None,
        {
            **settings.recipe,
            "model": model,
            "model_options": options,
            "steps": settings.steps,
            "train_size": size,
            "val_size": settings.val_size,
            "seed": seed,
            "data_seed": seed,  # a different subset per seed: the spread includes which images were drawn
            "device": settings.device,
            "threads": settings.threads,
            "data_dir": settings.data_dir,
            "name": name,
            "output_dir": str(out / "runs"),
            "eval_every": 1_000_000,  # validate once, at the end
            "checkpoint_every": 1_000_000,
            "test_at_end": False,
            "plots": False,
            "progress": "auto",  # a bar on a terminal, lines (with the point's ETA) in a log
        },
    )
    started = time.perf_counter()
    trainer = Trainer(config, out / "runs" / name, as_it_began(runtime, out / "runs" / name), resume_hint=AGAIN)
    continue_from_checkpoint(trainer)  # an interrupted point goes on where it stopped
    trainer.fit()
    images, labels = test
    test_acc = accuracy(trainer.predict(images, tta=config.tta), labels)
    batch = config.batch_size
    return {
        "kind": kind, "model": model, "model_options": options, "train_size": size, "seed": seed,
        "steps": settings.steps, "images_seen": settings.steps * batch, "epochs": settings.steps * batch / size,
        "val_acc": trainer.history[-1]["val_acc"], "test_acc": test_acc,
        "train_seconds": training_seconds(trainer.history), "seconds": time.perf_counter() - started,
        "runtime": trainer.runtime.describe(), "precision": trainer.runtime.precision,
        "settings": settings.fingerprint(),
    }


def load_point(path: Path, settings: DataEfficiencySettings) -> dict | None:
    """A stored point made with the same settings, else None (missing, unreadable or from other settings)."""
    try:
        point = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return point if point.get("settings") == settings.fingerprint() else None


def run_data_efficiency(
    settings: DataEfficiencySettings, out: Path, runtime: Runtime, log: Callable[[str], None] = print, *, train=True
) -> dict:
    """Train every missing (kind, size, seed) point, then return all points and their summary. With train=False,
    report the points already in `out` (say, filled by several processes): see `stored_report`."""
    settings.validate()
    if not train:
        return stored_report(settings, out, log)
    from resnet_cifar.data.locate import load_test_sample

    test = load_test_sample(settings.data_dir, settings.test_images)
    (out / "points").mkdir(parents=True, exist_ok=True)
    wanted = [(kind, size, seed) for seed in settings.seeds for size in settings.sizes for kind in KINDS]
    counter = NetProgress(len(wanted), log)
    points = []
    for kind, size, seed in wanted:
        path = out / "points" / f"{point_name(kind, size, seed)}.json"
        point = load_point(path, settings)
        if point is None:
            counter.start(f"{point_name(kind, size, seed)}: {settings.steps} steps on {size:,} images")
            with held(out / "runs" / point_name(kind, size, seed)):
                point = train_point(kind, size, seed, settings, out, test, runtime)
            counter.done()
            atomic_write_bytes(path, (json.dumps(point, indent=1) + "\n").encode())
            log(
                f"{kind:<8} {size:>6,} images  seed {seed}  test {point['test_acc']:.2%}  "
                f"val {point['val_acc']:.2%}  ({point['epochs']:.1f} epochs, {point['seconds']:.0f}s)"
            )
        else:
            counter.skip()
        points.append(point)
    return _results(asdict(settings), settings.fingerprint(), points, missing=[])


def stored_points(out: Path) -> list[dict]:
    """Every readable point in OUT/points, whatever settings it was made with."""
    points = []
    for path in sorted((out / "points").glob("*.json")):
        try:
            point = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(point, dict) and isinstance(point.get("settings"), dict):
            points.append(point)
    return points


def stored_report(settings: DataEfficiencySettings, out: Path, log: Callable[[str], None] = print) -> dict:
    """The report of the points in `out`, trained by this or any earlier command (nothing is trained, nothing created).

    The points made with this command's settings are reported, with the ones still missing named; when the folder
    holds points of one other set of settings only (it was filled with --quick, say), those are reported and the
    report says so. An empty folder, or one holding several other sets, is refused with one line (ReportError)."""
    groups: dict[str, list[dict]] = {}
    for point in stored_points(out):
        groups.setdefault(json.dumps(point["settings"], sort_keys=True), []).append(point)
    mine = json.dumps(settings.fingerprint(), sort_keys=True)
    if not groups:
        raise ReportError(f"{out} holds no data-efficiency points: nothing to report (run it without --report-only)")
    if mine in groups:
        points = groups[mine]
        done = {(p["kind"], p["train_size"], p["seed"]) for p in points}
        missing = [
            point_name(kind, size, seed)
            for seed in settings.seeds
            for size in settings.sizes
            for kind in KINDS
            if (kind, size, seed) not in done
        ]
        if missing:
            log(f"{len(missing)} points missing (not trained here): {', '.join(missing)}")
        return _results(asdict(settings), settings.fingerprint(), points, missing)
    if len(groups) > 1:
        raise ReportError(
            f"{out} holds points of {len(groups)} other settings than this command's: give the flags they were run "
            "with (e.g. --quick) to report one of them"
        )
    (points,) = groups.values()
    fingerprint = points[0]["settings"]
    log(
        f"reporting the {len(points)} points in {out}, which were run with other settings than this command's: "
        f"{fingerprint['steps']} steps, test images {fingerprint['test_images']:,}, model {fingerprint['model']} "
        f"{fingerprint['model_options']}"
    )
    described = {
        **fingerprint, "sizes": sorted({p["train_size"] for p in points}), "seeds": sorted({p["seed"] for p in points}),
        "note": "reported from the points found in the folder; not the settings of the reporting command",
    }
    return _results(described, fingerprint, points, missing=[])


def _results(described: dict, fingerprint: dict, points: list[dict], missing: list[str]) -> dict:
    return {
        "settings": described,
        "missing": missing,
        "budget": f"{fingerprint['steps']} steps of {fingerprint['recipe']['batch_size']} images for every point",
        "summary": summarize(points),
        "points": points,
        "seconds": sum(point["seconds"] for point in points),  # compute time of all points, whoever trained them
        "precision": "/".join(sorted({point["precision"] for point in points})),
    }


def summarize(points: list[dict]) -> dict:
    """{kind: [{train_size, epochs, images_seen, mean, std, n, test_acc: [...]}, ...]} sorted by size; std is the
    sample standard deviation over seeds (0 for one seed)."""
    summary: dict = {}
    for kind in KINDS:
        rows = []
        for size in sorted({p["train_size"] for p in points if p["kind"] == kind}):
            group = [p for p in points if p["kind"] == kind and p["train_size"] == size]
            accs = [p["test_acc"] for p in sorted(group, key=lambda p: p["seed"])]
            rows.append(
                {
                    "train_size": size, "epochs": round(group[0]["epochs"], 2), "images_seen": group[0]["images_seen"],
                    "mean": statistics.fmean(accs), "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                    "n": len(accs), "test_acc": accs, "val_acc_mean": statistics.fmean(p["val_acc"] for p in group),
                }
            )
        summary[kind] = rows
    return summary


def table_lines(results: dict) -> list[str]:
    residual = {row["train_size"]: row for row in results["summary"]["residual"]}
    plain = {row["train_size"]: row for row in results["summary"]["plain"]}
    lines = [
        "| training images | epochs (same steps) | residual: test acc. | plain twin: test acc. | residual − plain |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for size, row in residual.items():
        other = plain.get(size)
        gap = f"{100 * (row['mean'] - other['mean']):+.1f} pt" if other else "–"
        lines.append(
            f"| {size:,} | {row['epochs']:g} | {_mean_std(row)} | {_mean_std(other) if other else '–'} | {gap} |"
        )
    return lines


def _mean_std(row: dict) -> str:
    text = f"{row['mean']:.2%}"
    return f"{text} ± {100 * row['std']:.2f}" if row["n"] > 1 else text


def write_data_efficiency(results: dict, out: Path) -> list[Path]:
    from resnet_cifar.viz.study_plots import plot_data_efficiency

    return write_report(
        out, "data_efficiency.json", results, "points", pictures={"data_efficiency.png": plot_data_efficiency}
    )
