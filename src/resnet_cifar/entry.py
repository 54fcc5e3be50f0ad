"""The `resnet-cifar` command's first lines: Ctrl-C at any moment, even while the modules load, ends the command
with one line and exit code 130, never a traceback.

While PyTorch loads, a Ctrl-C is only remembered and acted on once it has loaded. Later a library may still catch
the KeyboardInterrupt and go on; the signal is remembered then too, so a long-running command (`serve`) checks
`interrupted()` before it starts and stops as asked.
"""

from __future__ import annotations

import signal
import sys

_received: list[int] = []


def _remember(signum, frame):
    _received.append(signum)


def _on_sigint(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether Ctrl-C (SIGINT) reached this process since it started."""
    return bool(_received)


def _stopped() -> int:
    print("resnet-cifar: interrupted", file=sys.stderr)
    return 130


def main() -> int:
    # While PyTorch starts, Ctrl-C is only remembered: an exception raised inside its C++ start-up aborts the
    # process ("terminate called…"), is swallowed half-way through numpy's, or makes Python kill itself on exit.
    signal.signal(signal.SIGINT, _remember)
    import torch  # noqa: F401  (every subcommand needs it; loaded here, where an interruption is safe)

    if interrupted():
        return _stopped()
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        from resnet_cifar.cli import main as run

        return run()
    except KeyboardInterrupt:
        return _stopped()
    except Exception:
        if interrupted():  # a library swallowed the KeyboardInterrupt and failed later because of it
            return _stopped()
        raise


if __name__ == "__main__":
    sys.exit(main())
