"""What every experiment shares: progress per net, and a report written whole that is never emptier than the one it
would replace."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from resnet_cifar.errors import ResnetCifarError
from resnet_cifar.files import atomic_write_bytes
from resnet_cifar.train.progress import format_duration

AGAIN = "the same experiment command again (finished nets are kept, this one continues from its checkpoint)"


class ReportError(ResnetCifarError):
    """A report that would hold nothing, or less than the one it would replace (nothing is written)."""


def _count_in(path: Path, key: str) -> int:
    """How many results (entries under `key`) the report at `path` holds; 0 when there is none or it is unreadable."""
    try:
        return len(json.loads(path.read_text())[key])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def write_report(
    out: Path, main: str, results: dict, key: str, *, extra: dict[str, object] | None = None,
    pictures: dict[str, Callable[[dict, Path], Path]] | None = None,
) -> list[Path]:
    """Write `results` as OUT/MAIN (JSON; `key` names its list or mapping of results), `extra` JSON files beside it
    and `pictures` ({file name: plot(results, path)}); returns the paths. Refused with ReportError, writing nothing,
    when `results[key]` is empty or a report already in `out` holds more results."""
    count = len(results[key])
    if count == 0:
        raise ReportError(f"nothing to report: no {key} in the results; {out} is left as it was")
    kept = _count_in(out / main, key)
    if kept > count:
        raise ReportError(
            f"{out / main} holds {kept} {key} and this report {count}: the fuller report is kept (nothing written; "
            "report into another --out, or remove it first)"
        )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in {main: results, **(extra or {})}.items():
        atomic_write_bytes(out / name, (json.dumps(content, indent=1) + "\n").encode())
        written.append(out / name)
    for name, plot in (pictures or {}).items():
        written.append(plot(results, out / name))  # written whole (viz.pictures.save_png)
    return written


class NetProgress:
    """`net i/N NAME` before each net of an experiment, with the ETA of the whole experiment once a net has been
    timed (nets already done in an earlier run count as done, not timed)."""

    def __init__(self, total: int, log: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic):
        self.total, self.log, self.clock = total, log, clock
        self.index = 0
        self.timed_seconds, self.timed = 0.0, 0
        self._started: float | None = None

    def skip(self) -> None:
        """A net whose result is already stored."""
        self.index += 1

    def start(self, label: str) -> None:
        self.index += 1
        left = self.total - self.index + 1
        eta = f"; ETA {format_duration(left * self.timed_seconds / self.timed)} for the rest" if self.timed else ""
        self.log(f"net {self.index}/{self.total} {label}{eta}")
        self._started = self.clock()

    def done(self) -> None:
        if self._started is not None:
            self.timed_seconds += self.clock() - self._started
            self.timed += 1
            self._started = None
