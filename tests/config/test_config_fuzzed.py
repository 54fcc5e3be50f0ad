"""Random YAML and binary garbage as configuration: a ConfigError, never a traceback."""

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnet_cifar.config import load_config
from resnet_cifar.data.cifar10 import parse_python
from resnet_cifar.errors import ConfigError, DataError

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


YAML_TEXT = st.one_of(
    st.text(max_size=300),
    st.dictionaries(
        st.sampled_from(
            [
                "lr",
                "epochs",
                "model",
                "batch_size",
                "train_size",
                "milestones",
                "tta",
                "lrr",
                "base",
                "model_options",
                "schedule",
                "val_size",
                "ema",
                "name",
            ]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(10**6), 10**6),
            st.floats(allow_nan=True),
            st.text(max_size=10),
            st.lists(st.integers(-5, 5), max_size=3),
            st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
        ),
        max_size=5,
    ).map(lambda d: "\n".join(f"{k}: {v!r}" for k, v in d.items())),
)


@FUZZ
@given(YAML_TEXT)
def test_random_yaml_configs(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzzcfg") / "config.yaml"
    path.write_text(text)
    try:
        config = load_config(path)
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    assert config.batch_size > 0 and config.lr > 0


def test_binary_garbage_as_config(tmp_path):
    (tmp_path / "config.yaml").write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError):
        load_config(tmp_path / "config.yaml")


def test_a_huge_memo_index_is_refused_before_anything_is_allocated():
    """b'Nr\\x9c\\xc6\\\\F' (None, then LONG_BINPUT 1,180,485,276): the unpickler would size its memo to that index,
    ~19 GB, before failing; the check refuses it first (this example took 80 s of page faults before)."""
    started = time.perf_counter()
    with pytest.raises(DataError, match="memo index 1180485276"):
        parse_python(b"Nr\x9c\xc6\\F", "data_batch_1")
    assert time.perf_counter() - started < 1.0
