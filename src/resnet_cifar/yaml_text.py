"""YAML as the configs and flags read it: YAML 1.1 (PyYAML's) except that `1e-3` and `5e-4` are floats.

YAML 1.1 wants a dot in a float (`1.0e-3`), so PyYAML reads the ordinary spelling `5e-4` as a string; YAML 1.2 and
Python's float() read it as a number, and so do we, in config files and flag values alike.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class Loader(yaml.SafeLoader):
    """SafeLoader (no Python objects) that also reads exponent floats without a dot."""


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text (raises yaml.YAMLError as yaml.safe_load does)."""
    return yaml.load(text, Loader=Loader)  # a SafeLoader: no Python objects


def float_spelling(text: str) -> float | str:
    """`text` as a float when Python's float() reads it ("1e-3", "1_000.5", "inf"), else `text` unchanged."""
    try:
        return float(text)
    except ValueError:
        return text
