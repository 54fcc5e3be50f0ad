"""`resnet-cifar ARGS` run in the test process, as the command runs it: its exit code, stdout and stderr through the
same `main`, without the ~2 s of start-up a new interpreter adds per call. Tests whose point is a process of its own
(signals, memory, the first run a user makes) start one instead."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import pytest


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    from resnet_cifar import cli as command

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setattr(command.train_commands, "_stop_with_parent", lambda: None)  # not for the test process
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        if cwd is not None:
            patch.chdir(cwd)
        try:
            code = command.main([str(arg) for arg in args])
        except SystemExit as stop:  # argparse's refusals
            code = stop.code if isinstance(stop.code, int) else 2
    return subprocess.CompletedProcess(["resnet-cifar", *args], code, out.getvalue(), err.getvalue())


def cli_code(*args) -> int:
    """`resnet-cifar ARGS` in this process: its exit code (what it printed stays in capsys)."""
    from resnet_cifar import cli

    return cli.main([str(arg) for arg in args])
