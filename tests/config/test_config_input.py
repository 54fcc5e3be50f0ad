"""Configuration input: files, values and flags that cannot be a configuration are refused in one line before
any work, and text is taken as text."""

from __future__ import annotations

import pytest

from commands import cli_code
from resnet_cifar.config import load_config, parse_cli_value
from resnet_cifar.errors import ConfigError


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--momentum", "2"], "momentum: must be in [0, 1), got 2"),
        (["--gamma", "-3"], "gamma: must be in (0, 1], got -3"),
        (["--name", "../escape"], "name: must be a plain folder name"),
        (["--name", "a/b"], "name: must be a plain folder name"),
        (["--cutout", "40"], "cutout: must be in [0, 32], got 40"),
        (["--learning_rate", "0.1"], "did you mean --lr?"),
    ],
)
def test_nonsense_values_are_refused_before_any_work(flags, message, tmp_path, capsys):
    try:
        code = cli_code("train", *flags, "--output-dir", tmp_path)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    assert code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_synonyms_of_config_keys_get_a_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        load_config(None, {"learning_rate": 0.1})


def test_more_micro_batches_than_images_is_refused_before_loading_data(capsys):
    assert cli_code("train", "--accumulate", "1000", "--batch-size", "128", "--data-dir", "/nonexistent") == 2
    assert "accumulate: 1000 micro-batches of a 128-image batch" in capsys.readouterr().err


def test_more_threads_than_cores_are_refused_before_any_work(tmp_path, capsys):
    assert cli_code("train", "--threads", "999", "--output-dir", tmp_path) == 2
    assert "threads: must be 0 (one per core) to" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_scientific_notation_is_a_float_in_yaml_and_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("weight_decay: 5e-4\nlr: 1E-1\nwarmup_start: .5\n")
    config = load_config(path, {"label_smoothing": parse_cli_value("1e-1"), "momentum": parse_cli_value("9_0e-2")})
    assert (config.weight_decay, config.lr, config.warmup_start) == (5e-4, 0.1, 0.5)
    assert (config.label_smoothing, config.momentum) == (0.1, 0.9)
    with pytest.raises(ConfigError, match="finite"):
        load_config(None, {"lr": "inf"})
    assert load_config(None, {"epochs": parse_cli_value("3")}).epochs == 3  # integers stay integers
