"""YAML as the configs and flags read it: YAML 1.1 (PyYAML's, no Python objects) except that `1e-3` and `5e-4` are
floats (YAML 1.1 wants `1.0e-3`; YAML 1.2 and Python's float() do not), a key given twice is an error rather than
the last one silently winning, and anchors and aliases are refused: a few hundred bytes of nested aliases expand to
gigabytes, and a configuration never needs them."""

from __future__ import annotations

import re
from typing import Any

import yaml


class Loader(yaml.SafeLoader):
    """SafeLoader that reads exponent floats without a dot, refuses aliases and repeated keys."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent) or getattr(self.peek_event(), "anchor", None):
            mark = self.peek_event().start_mark
            raise yaml.constructor.ConstructorError(None, None, "anchors and aliases are not read here", mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=True) for key, _ in node.value]
        repeated = next((key for key in keys if isinstance(key, str) and keys.count(key) > 1), None)
        if repeated is not None:
            raise yaml.constructor.ConstructorError(None, None, f"key {repeated!r} given twice", node.start_mark)
        return super().construct_mapping(node, deep)


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"),
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
