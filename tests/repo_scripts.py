"""The repository's scripts (tools/, benchmarks/) imported as modules, so tests can call their functions or run
their `main` without the ~2-3 s of start-up a new interpreter adds."""

import contextlib
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """The script at REPO/relative_path (e.g. "tools/ship_weights.py"), executed once as a module of its own name."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(relative_path: str, *args: str) -> str:
    """What `python relative_path args` prints, run in this process: its folder is on the import path for its
    siblings (as `python` puts it there), and the thread count the script sets is put back afterwards."""
    threads = torch.get_num_threads()
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out):
        patch.syspath_prepend(str((REPO / relative_path).parent))
        patch.setattr(sys, "argv", [relative_path, *map(str, args)])
        try:
            load_script(relative_path).main()
        finally:
            torch.set_num_threads(threads)
    return out.getvalue()
