"""Finding CIFAR-10: the folder named is the only one looked in, a file is not a folder; checking never downloads."""

import pytest

from commands import cli_code
from tiny import SMALL_FLAGS


def test_a_data_dir_that_is_missing_or_empty_is_an_error_not_another_copy(cifar_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESNET_CIFAR_DATA", str(cifar_dir))  # a good copy elsewhere must not be used instead
    (tmp_path / "empty").mkdir()
    assert cli_code("data", "verify", "--data-dir", tmp_path / "empty", "--no-download") == 2
    err = capsys.readouterr().err
    assert f"Looked in: {tmp_path / 'empty'} (--data-dir)." in err and "RESNET_CIFAR_DATA)" not in err
    assert (
        cli_code("train", *SMALL_FLAGS, "--data-dir", tmp_path / "missing", "--no-download", "--output-dir", tmp_path)
        == 2
    )


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert cli_code("data", "verify", "--data-dir", tmp_path / "notes.txt") == 2
    assert "is a file, not a CIFAR-10 folder" in capsys.readouterr().err  # before: FileExistsError traceback


def test_data_verify_only_reports_and_never_downloads(tmp_path, monkeypatch, capsys):
    from resnet_cifar.data import locate

    monkeypatch.setattr(locate, "download_file", lambda *a, **k: pytest.fail("verify downloaded"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESNET_CIFAR_DATA", str(tmp_path / "nowhere"))
    assert cli_code("data", "verify") == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err


def test_load_cifar10_takes_data_dir_as_the_cli_names_it(cifar_dir):
    from resnet_cifar.data import load_cifar10

    images, labels = load_cifar10(data_dir=cifar_dir, split="test")
    assert images.shape == (10_000, 3, 32, 32) and len(labels) == 10_000
