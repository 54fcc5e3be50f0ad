"""Progress that reads well in a terminal (a tqdm bar per epoch) and in a log (a line after the first steps, then every
30 s with the ETA at the last ten minutes' speed, and a summary line per epoch), chosen by `isatty()` alone. The
loop's device counters are read only when something is shown."""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable

from tqdm import tqdm

Stats = Callable[[], tuple[float, float, float]]  # () -> (loss, accuracy, images/s) of the epoch so far


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "lines"
    return mode


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def format_row(row: dict, epochs: int) -> str:
    """The summary line of an epoch (a metrics.csv row)."""
    text = (
        f"epoch {row['epoch']:>3}/{epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}  "
        f"lr {row['lr']:.4g}  {row['seconds']:.1f}s  {row['images_per_s']:.0f} img/s"
    )
    if row["val_acc"] is not None:
        text += f"  | val loss {row['val_loss']:.4f}  acc {row['val_acc']:.4f}"
    return text


def plural(count: float, word: str) -> str:
    return f"{count:,g} {word}" + ("" if count == 1 else "s")


class RunProgress:
    """A run's progress. `start_epoch()`, then `update()` after each step, then `end_epoch()` with its summary."""

    REFRESH_S = 0.5  # the bar's statistics are read at most this often
    EVERY_S = 30.0  # off-terminal: a line at least this often
    FIRST_AFTER_STEPS = 3  # off-terminal: the first line, so a slow machine shows its speed early
    ETA_WINDOW_S = 600.0  # the ETA follows the speed of about the last ten minutes, so a slow stretch long past (a
    # first epoch slowed by another process) does not inflate it for the rest of a run of hours

    def __init__(self, mode: str, total_steps: int, epochs: int, clock: Callable[[], float] = time.monotonic):
        self.mode = resolve_mode(mode)
        self.total_steps = total_steps
        self.epochs = epochs
        self.clock = clock
        self.bar = None
        self.started = clock()
        self.steps_here = 0  # steps done by this process (a resumed run's earlier steps are not timed)
        self.last_shown = self.started
        self.first_step_done = self.started  # the first step pays one-off costs (kernel selection): not in the ETA
        self.marks: deque[tuple[float, int]] = deque()  # (time, steps_here) from the first step and each line shown

    def start_epoch(self, epoch: int, steps: int, initial: int = 0) -> None:
        """`epoch` counts from 1; `initial` steps of it are already done (a resumed run)."""
        self.epoch = epoch
        if self.mode == "bar":
            self.bar = tqdm(
                total=steps, initial=initial, desc=f"epoch {epoch}/{self.epochs}", unit="step", leave=False,
                dynamic_ncols=False, ncols=110, file=sys.stderr,
            )

    def update(self, step: int, stats: Stats) -> None:
        """Global step `step` (1-based) is done; `stats()` is called only when something is shown."""
        self.steps_here += 1
        now = self.clock()
        if self.steps_here == 1:
            self.first_step_done = now
            self.marks.append((now, 1))
        if self.bar is not None:
            if now - self.last_shown >= self.REFRESH_S:
                self.last_shown = now
                loss, accuracy, images_per_s = stats()
                self.bar.set_postfix(
                    loss=f"{loss:.3f}", acc=f"{accuracy:.3f}", img_s=f"{images_per_s:.0f}", refresh=False
                )
            self.bar.update(1)
        elif self.mode == "lines" and self._line_due(now):
            self.last_shown = now
            print(self.line(step, stats(), now), flush=True)
            self._mark(now)

    def _mark(self, now: float) -> None:
        """Keep the marks of the ETA's window and the newest one before it (its starting point)."""
        self.marks.append((now, self.steps_here))
        while len(self.marks) > 2 and now - self.marks[1][0] >= self.ETA_WINDOW_S:
            self.marks.popleft()

    def _line_due(self, now: float) -> bool:
        return self.steps_here == self.FIRST_AFTER_STEPS or now - self.last_shown >= self.EVERY_S

    def line(self, step: int, stats: tuple[float, float, float], now: float) -> str:
        loss, accuracy, images_per_s = stats
        since, steps_then = self.marks[0] if self.marks else (self.first_step_done, 1)
        if self.steps_here > steps_then:
            seconds_per_step = (now - since) / (self.steps_here - steps_then)
        else:
            seconds_per_step = now - self.started
        eta = format_duration((self.total_steps - step) * seconds_per_step)
        return (
            f"  step {step:,}/{self.total_steps:,} (epoch {self.epoch}/{self.epochs})  loss {loss:.4f}  "
            f"acc {accuracy:.4f}  {images_per_s:.0f} img/s  ETA {eta} for training"
        )

    def end_epoch(self, summary: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.mode != "none":
            print(summary, flush=True)


def say(message: str, mode: str = "auto") -> None:
    if resolve_mode(mode) != "none":
        print(message, flush=True)
