"""Configuration input: files, values and flags that cannot be a configuration are refused in one line before
any work, and text is taken as text."""

from __future__ import annotations

import re

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


BILLION_LAUGHS = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]"
        for i in range(8)
    ]
    + ["milestones: *i"]
)


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    import time

    (tmp_path / "laughs.yaml").write_text(BILLION_LAUGHS)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="anchors and aliases are not read here"):
        load_config(tmp_path / "laughs.yaml")
    assert time.perf_counter() - started < 1 and len(BILLION_LAUGHS) < 500


def test_a_key_given_twice_is_refused(tmp_path):
    (tmp_path / "twice.yaml").write_text("epochs: 1\nlr: 0.1\nepochs: 2\n")
    with pytest.raises(ConfigError, match="key 'epochs' given twice"):
        load_config(tmp_path / "twice.yaml")


def test_only_small_regular_files_are_read_as_configs(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "big.yaml").write_text("epochs: 1\n" + "# padding\n" * 40_000)
    for path, message in (
        ("/dev/zero", "a device, not a config file"),
        (tmp_path / "pipe", "a named pipe (FIFO), not a config file"),
        (tmp_path, "a folder, not a config file"),
        (tmp_path / "big.yaml", "larger than 256 KiB"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(path)
    (tmp_path / "base.yaml").write_text("base: /dev/zero\n")
    with pytest.raises(ConfigError, match="a device"):
        load_config(tmp_path / "base.yaml")


def test_a_file_that_is_not_a_config_is_never_quoted(tmp_path):
    secret = "root:$6$salt$hash:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n"
    (tmp_path / "shadow").write_text(secret)
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path / "shadow")
    assert "$6$" not in str(refused.value) and "daemon" not in str(refused.value)
    assert "not a configuration" in str(refused.value)


@pytest.mark.parametrize("name", ["010", "yes", "12:30", "null", "0x10"])
def test_names_and_folders_on_the_command_line_are_text(name, tmp_path):
    import argparse

    from resnet_cifar.config import add_config_flags, flag_overrides

    parser = argparse.ArgumentParser()
    add_config_flags(parser)
    args = parser.parse_args(["--name", name, "--output-dir", "2024", "--data-dir", name])
    config = load_config(None, flag_overrides(args))
    assert config.name == name and config.output_dir == "2024" and config.data_dir == name


@pytest.mark.parametrize("seed", ["1e23", "100000000000000000000000", "-1"])
def test_seeds_out_of_range_are_one_line(seed, capsys):
    assert cli_code("train", "--seed", seed, "--steps", "1") == 2
    assert "seed" in capsys.readouterr().err
