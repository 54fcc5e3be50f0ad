"""Stopping a run cleanly: SIGINT, SIGTERM and SIGHUP become a flag the training loop checks after each step."""

from __future__ import annotations

import contextlib
import signal
import sys


class StopSignal:
    """Turns SIGINT/SIGTERM/SIGHUP into a flag the loop checks after each step (finish it, checkpoint, exit).

    A step can take seconds, so an impatient second Ctrl-C is expected: it only says that the checkpoint is coming
    (stopping mid-step would leave nothing to resume from). A third one stops at once, without a checkpoint."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __init__(self):
        self.received: int | None = None
        self.count = 0
        self._previous = {}

    def __enter__(self):
        for sig in self.SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.count += 1
        if self.count >= 3:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signum
        else:
            print(
                "finishing the current step to write a checkpoint; press Ctrl-C once more to quit without one",
                file=sys.stderr, flush=True,
            )

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
