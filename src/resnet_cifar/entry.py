"""The `resnet-cifar` command's first lines: Ctrl-C at any moment, even while the modules load, ends the command
with one line and exit code 130, never a traceback.

A library may catch the KeyboardInterrupt of a Ctrl-C that lands while it imports and go on; the signal is also
remembered here, so a long-running command (`serve`) checks `interrupted()` before it starts and stops as asked.
"""

from __future__ import annotations

import signal
import sys

_received: list[int] = []


def _on_sigint(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether Ctrl-C (SIGINT) reached this process since it started."""
    return bool(_received)


def main() -> int:
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        from resnet_cifar.cli import main as run

        return run()
    except KeyboardInterrupt:
        print("resnet-cifar: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
