"""Ctrl-C while the command starts: remembered, not raised, while PyTorch loads (an exception inside its C++ start-up
aborts the process), and acted on once it has loaded. A library may still swallow a later KeyboardInterrupt; the
signal is remembered then too, so a long-running command (`serve`) checks `interrupted()` before it starts."""

from __future__ import annotations

import signal

_received: list[int] = []


def _remember(signum, frame):
    _received.append(signum)


def _raise(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


def remember_only() -> None:
    """From now on Ctrl-C is only remembered (while modules load)."""
    signal.signal(signal.SIGINT, _remember)


def raise_from_now_on() -> None:
    """From now on Ctrl-C raises KeyboardInterrupt (and is remembered too)."""
    signal.signal(signal.SIGINT, _raise)


def interrupted() -> bool:
    """Whether Ctrl-C (SIGINT) reached this process since it started."""
    return bool(_received)
