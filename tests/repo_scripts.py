"""The repository's scripts (tools/, benchmarks/) imported as modules, so tests can call their functions."""

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """The script at REPO/relative_path (e.g. "tools/ship_weights.py"), executed once as a module of its own name."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
