"""How the repository's scripts (benchmarks/, tools/) run their main(): a user's error in one line, not a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from resnet_cifar.allocator import keep_freed_memory
from resnet_cifar.errors import ResnetCifarError


def run_main(main: Callable[[], int | None]) -> int:
    """`main()`'s exit code; a ResnetCifarError printed as one line naming the script (exit 2), Ctrl-C as 130. The
    process keeps freed memory as the `resnet-cifar` command does, so a script times what the command computes."""
    keep_freed_memory()
    script = Path(sys.argv[0]).name
    try:
        return main() or 0
    except ResnetCifarError as error:
        print(f"{script}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{script}: interrupted", file=sys.stderr)
        return 130
