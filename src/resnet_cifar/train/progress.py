"""Progress output that reads well both in a terminal (a tqdm bar per epoch) and in a file or CI log (one plain
line per epoch). The choice uses `isatty()` only; nothing probes the terminal (no `stty`, no size queries)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        return "bar" if sys.stderr.isatty() else "lines"
    return mode


class EpochProgress:
    """One epoch's progress: `update()` after each step, `close()` with the epoch's summary line."""

    REFRESH_S = 0.5  # statistics are read (a host sync on a GPU) at most this often

    def __init__(self, mode: str, epoch: int, epochs: int, steps: int, initial: int = 0):
        self.mode = resolve_mode(mode)
        self.bar = None
        self.last_refresh = 0.0
        if self.mode == "bar":
            self.bar = tqdm(
                total=steps,
                initial=initial,
                desc=f"epoch {epoch}/{epochs}",
                unit="step",
                leave=False,
                dynamic_ncols=False,
                ncols=110,
                file=sys.stderr,
            )

    def update(self, stats: Callable[[], tuple[float, float, float]]) -> None:
        """One step done; `stats()` gives (loss, accuracy, images/s) and is called only when the bar refreshes."""
        if self.bar is None:
            return
        now = time.monotonic()
        if now - self.last_refresh >= self.REFRESH_S:
            self.last_refresh = now
            loss, accuracy, images_per_s = stats()
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}", img_s=f"{images_per_s:.0f}", refresh=False)
        self.bar.update(1)

    def close(self, summary: str) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.mode != "none":
            print(summary, flush=True)


def say(message: str, mode: str = "auto") -> None:
    if resolve_mode(mode) != "none":
        print(message, flush=True)
