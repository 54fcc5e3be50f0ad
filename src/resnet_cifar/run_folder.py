"""The run folder, OUTPUT_DIR/NAME/: the names of the files a run writes (config.yaml, metrics.csv, last and best
checkpoints with their readable .json, test logits, results*.json, pictures, .lock), claiming a fresh folder, and
one run at a time inside it."""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from resnet_cifar.errors import ConfigError
from resnet_cifar.files import atomic_write_bytes, check_output

if TYPE_CHECKING:
    import torch

OUTPUT_DIR = "outputs"  # where runs and reports go unless told otherwise
CONFIG = "config.yaml"
METRICS = "metrics.csv"
LOGITS = "test_logits.safetensors"
RESULTS = "results.json"
PICTURES = ("inference.png", "curves.png", "confusion_matrix.png")
CHECKPOINTS = ("last", "best")
LOCK = ".lock"


def checkpoint_path(run_dir: Path, which: str = "last") -> Path:
    return Path(run_dir) / f"{which}.safetensors"


def run_files(run_dir: Path) -> list[Path]:
    """Every file a run wrote into `run_dir` (what --overwrite replaces); other files are left alone."""
    run_dir = Path(run_dir)
    names = [CONFIG, METRICS, LOGITS, *PICTURES]
    names += [f"{which}{suffix}" for which in CHECKPOINTS for suffix in (".safetensors", ".json")]
    found = [run_dir / name for name in names if (run_dir / name).is_file()]
    return found + sorted(run_dir.glob("results*.json"))


def _run_file_names() -> set[str]:
    names = {CONFIG, METRICS, LOGITS, LOCK, *PICTURES}
    return names | {f"{which}{suffix}" for which in CHECKPOINTS for suffix in (".safetensors", ".json")}


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` holds a training run (its config or a checkpoint)."""
    folder = Path(folder)
    return (folder / CONFIG).is_file() or checkpoint_path(folder).is_file()


def refuse_overwrite(path: Path, force: bool, inputs=()) -> Path:
    """`path` if a command may write it (files.check_output: never an input, never a special file, an existing file
    only with `force`), and never a file of a training run (an export or import written there would end the run)."""
    path = Path(path)
    where = path.resolve().parent
    if is_run_folder(where) and (path.name in _run_file_names() or path.name.startswith("results")):
        raise ConfigError(f"{path} is a file of the training run in {where}, which is never written over; name another")
    return check_output(path, force, inputs)


def claim_new(base: Path, overwrite: bool = False) -> Path:
    """Create the folder of a new run: `base`, else `base-2`, `base-3`, ... Creating it is the claim (mkdir is atomic),
    so two runs started together with one name never share a folder. `overwrite` reuses `base`."""
    base = Path(base)
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            base.mkdir(exist_ok=True)
            return base
        for candidate in itertools.chain([base], (base.with_name(f"{base.name}-{n}") for n in itertools.count(2))):
            try:
                candidate.mkdir()
            except FileExistsError:
                if not abandoned(candidate):
                    continue
                discard_unstarted(candidate)  # a run killed before its first checkpoint: its name is free again
                try:
                    candidate.mkdir()
                except FileExistsError:
                    continue
            return candidate
    except OSError as error:
        raise ConfigError(f"cannot create the run folder {base}: {error.strerror or error}") from None
    raise AssertionError("unreachable")


def orphaned_temporaries(run_dir: Path) -> list[Path]:
    """Temporary files a run's atomic writes left behind when the process was killed mid-write (`.NAME.*.tmp`)."""
    names = _run_file_names()

    def written_for(path: Path) -> str:  # ".last.safetensors.k3j9_x.tmp" -> "last.safetensors"
        return path.name[1:].removesuffix(".tmp").rsplit(".", 1)[0]

    found = sorted(Path(run_dir).glob(".*.tmp")) if Path(run_dir).is_dir() else []
    return [path for path in found if written_for(path) in names or written_for(path).startswith("results")]


def remove_orphaned_temporaries(run_dir: Path) -> None:
    for path in orphaned_temporaries(run_dir):
        path.unlink(missing_ok=True)


def clear_run(run_dir: Path) -> None:
    """Remove an old run's files from its folder (--overwrite), its half-written temporaries included."""
    for path in [*run_files(run_dir), *orphaned_temporaries(run_dir)]:
        path.unlink(missing_ok=True)


def discard_unstarted(run_dir: Path) -> None:
    """Remove the folder of a run that stopped before its first checkpoint: the files it wrote (config.yaml, an
    empty metrics.csv, .lock, half-written temporaries) and then the folder, if nothing else is in it."""
    run_dir = Path(run_dir)
    clear_run(run_dir)
    with contextlib.suppress(FileNotFoundError):
        (run_dir / LOCK).unlink()
    with contextlib.suppress(OSError):  # not empty: files the run did not write stay, and so does the folder
        run_dir.rmdir()


def missing_checkpoint_advice(run_dir: Path) -> str:
    """What to do with a run folder that has no `last` checkpoint to resume from, without losing what it holds."""
    kept = [path.name for path in run_files(run_dir)]
    if checkpoint_path(run_dir, "best").is_file():
        return (
            f"--resume: {run_dir} has no last.safetensors to continue from; it still holds {', '.join(kept)}. "
            f"Test its best weights with `resnet-cifar evaluate {run_dir} --checkpoint best`, or train anew under "
            "another --name (--overwrite would delete these files)"
        )
    return (
        f"--resume: {run_dir} has no checkpoint yet (the run stopped before writing its first one); start it again "
        "with the same command and --overwrite"
    )


def _lock_owner_gone(lock: Path) -> bool:
    """Whether nobody holds `lock` and the process it names ("pid N") has ended."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        with open(lock, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file is closed
            handle.seek(0)
            text = handle.read().strip()
    except (BlockingIOError, OSError):
        return False
    pid = text.removeprefix("pid ").strip()
    if pid.isdigit():
        try:
            os.kill(int(pid), 0)
            return False  # alive: between its mkdir and its lock, or locking again
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
    return True


def abandoned(run_dir: Path) -> bool:
    """A folder left by a run stopped before its first checkpoint (killed while it loaded the data): only the
    files such a run writes (.lock, config.yaml, metrics.csv), no checkpoint, and its lock's owner gone."""
    run_dir = Path(run_dir)
    if not (run_dir / LOCK).is_file() or checkpoint_path(run_dir).exists() or checkpoint_path(run_dir, "best").exists():
        return False
    names = {entry.name for entry in run_dir.iterdir()} - {path.name for path in orphaned_temporaries(run_dir)}
    return names <= {LOCK, CONFIG, METRICS} and _lock_owner_gone(run_dir / LOCK)


class RunLock:
    """Holds `.lock` in a run folder exclusively while a run writes there (an OS lock: it is released when the
    process ends, however it ends, so a killed run never leaves a stale lock). A second run, `--overwrite` or
    `--resume` of a folder in use fails with one line instead of mixing two runs' files."""

    def __init__(self, run_dir: Path, instead: str = "choose another --name"):
        self.path = Path(run_dir) / LOCK
        self.instead = instead  # what the refused command can do instead of waiting
        self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks here; runs are not guarded against each other
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the life of the run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"{self.path.parent} is in use by another run ({owner}); wait for it to finish or {self.instead}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None


# --- metrics.csv: one row per epoch --------------------------------------------------------------------------------

METRIC_COLUMNS = (
    "epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_s", "val_seconds",
)
TIMING_COLUMNS = ("seconds", "images_per_s", "val_seconds")  # the only columns that differ between identical runs


def metrics_row(**values) -> dict:
    """A metrics.csv row with every column in order, those not given empty (validation's until it has run)."""
    unknown = set(values) - set(METRIC_COLUMNS)
    if unknown:
        raise ValueError(f"not metrics.csv columns: {sorted(unknown)}")
    return {column: values.get(column) for column in METRIC_COLUMNS}


def training_seconds(history: list[dict]) -> float:
    """The training time of a run: its epochs' `seconds` (validation excluded), summed."""
    return sum(row["seconds"] for row in history)


def metrics_csv(rows: list[dict]) -> str:
    """The text of metrics.csv; floats are written with repr, so reading them back gives the same numbers."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: ("" if row[k] is None else repr(row[k]) if isinstance(row[k], float) else row[k])
                for k in METRIC_COLUMNS
            }
        )
    return buffer.getvalue()


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    atomic_write_bytes(Path(run_dir) / METRICS, metrics_csv(rows).encode())


def read_metrics(path: Path) -> list[dict]:
    """Rows of a metrics.csv (a run folder or the file itself) with numbers parsed (empty cells -> None); ConfigError
    naming the file when it is not one (a damaged file is reported, never half-read)."""
    path = Path(path)
    path = path / METRICS if path.is_dir() else path
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [_metrics_row(raw) for raw in csv.DictReader(handle)]
    except (UnicodeDecodeError, ValueError, csv.Error) as error:
        raise ConfigError(
            f"{path} is damaged ({type(error).__name__}); restore it, or delete it to go on without the earlier "
            "epochs' rows"
        ) from None


def _metrics_row(raw: dict) -> dict:
    row = {}
    for key in METRIC_COLUMNS:
        value = raw.get(key, "")
        row[key] = None if value in ("", None) else (int(value) if key in ("epoch", "step") else float(value))
    return row


# --- test logits and results ---------------------------------------------------------------------------------------


def save_logits(run_dir: Path, logits: torch.Tensor, tta: int, weights: str) -> None:
    """The final test logits, with which weights and TTA level made them (plot redraws pictures from them)."""
    import safetensors.torch

    data = safetensors.torch.save({"logits": logits.contiguous()}, metadata={"tta": str(tta), "weights": weights})
    atomic_write_bytes(Path(run_dir) / LOGITS, data)


def load_logits(run_dir: Path) -> tuple[torch.Tensor, dict] | None:
    """(logits, {"tta", "weights"}) saved by the run, or None."""
    import safetensors

    path = Path(run_dir) / LOGITS
    if not path.is_file():
        return None
    with safetensors.safe_open(str(path), "pt") as stored:
        return stored.get_tensor("logits"), dict(stored.metadata() or {})


def results_filename(weights: str, tta: int, default_tta: int) -> str:
    """`results.json` for the run's own setting (final weights, its TTA level), else a name that says which."""
    return RESULTS if (weights, tta) == ("last", default_tta) else f"results-{weights}-tta{tta}.json"
