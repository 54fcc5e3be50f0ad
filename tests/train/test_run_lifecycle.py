"""A training run's folder over its life: claimed once, locked while it runs, cleared only when asked, paused,
interrupted, resumed and finished; what the run and its advice never lose."""

from __future__ import annotations

import os
import signal

import pytest
import yaml

from commands import cli_code, run_cli
from conftest import REPO
from fakes import dead_pid
from resnet_cifar import run_folder
from resnet_cifar.train.signals import StopSignal
from tiny import SMALL_FLAGS, SMALL_RUN, tiny_flags


def test_a_pause_is_not_part_of_the_run_and_zero_is_refused(cifar_dir, tmp_path, capsys):
    common = [*SMALL_FLAGS, "--data-dir", cifar_dir, "--output-dir", tmp_path, "--no-plots"]
    assert cli_code("train", *common, "--name", "paused", "--stop-after-epochs", "1") == 0
    assert "stopped after 1 epoch as asked" in capsys.readouterr().out
    assert cli_code("train", "--resume", tmp_path / "paused") == 0  # before: stopped again at once, every time
    rows = (tmp_path / "paused" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "test_accuracy=" in capsys.readouterr().out
    for bad in ("0", "-1"):
        assert cli_code("train", *common, "--stop-after-epochs", bad) == 2
        assert "stop_after_epochs: must be positive" in capsys.readouterr().err


def test_two_runs_with_one_name_never_share_a_folder(tmp_path):
    first, second = run_folder.claim_new(tmp_path / "race"), run_folder.claim_new(tmp_path / "race")
    assert (first.name, second.name) == ("race", "race-2")  # the folder is claimed by creating it, atomically


def test_a_folder_in_use_is_refused_with_one_line(cifar_dir, tmp_path, capsys):
    with run_folder.RunLock(tmp_path / "busy"):
        code = cli_code(
            "train", *SMALL_FLAGS, "--data-dir", cifar_dir, "--output-dir", tmp_path, "--name", "busy", "--overwrite"
        )
    assert code == 2
    assert f"in use by another run (pid {os.getpid()})" in capsys.readouterr().err
    assert not (tmp_path / "busy" / "config.yaml").exists()  # nothing was written into the other run's folder


def test_overwrite_leaves_nothing_of_the_old_run(finished_run, tmp_path, cifar_dir):
    run = tmp_path / "again"
    run.mkdir()
    for path in run_folder.run_files(finished_run):
        (run / path.name).write_bytes(path.read_bytes())
    (run / "notes.txt").write_text("mine")
    common = [*SMALL_FLAGS, "--data-dir", cifar_dir, "--output-dir", tmp_path, "--name", "again"]
    assert cli_code("train", *common, "--overwrite", "--no-plots", "--no-test-at-end") == 0
    left = sorted(p.name for p in run.iterdir())
    fresh = ["best.json", "best.safetensors", "config.yaml", "last.json", "last.safetensors", "metrics.csv"]
    assert left == [".lock", *fresh, "notes.txt"]  # no results.json, test logits or pictures of the old run


def test_a_second_ctrl_c_still_gets_the_checkpoint_and_a_third_quits(capsys):
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == signal.SIGINT  # the loop finishes its step and checkpoints
        assert "press Ctrl-C once more to quit without one" in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_resuming_a_folder_without_a_checkpoint_says_what_to_do(tmp_path, capsys):
    (tmp_path / "early").mkdir()
    assert cli_code("train", "--resume", tmp_path / "early") == 2
    assert "has no checkpoint yet" in capsys.readouterr().err


def test_only_the_run_that_asks_publishes_outputs_inference_png(finished_run):
    assert not (finished_run.parent / "inference.png").exists()  # a tiny run's picture stays in its folder
    assert (finished_run / "inference.png").is_file()
    assert "--publish-picture" in (REPO / "Makefile").read_text()  # `make train` asks for it


def test_resuming_a_finished_run_reports_its_results_without_testing_again(finished_run, capsys):
    results = finished_run / "results.json"
    before = results.stat().st_mtime_ns
    assert cli_code("train", "--resume", finished_run) == 0
    out = capsys.readouterr().out
    assert "has finished all 4 steps" in out and "test_accuracy=" in out
    assert results.stat().st_mtime_ns == before


def test_resume_with_a_config_file_is_refused(finished_run, capsys):
    assert cli_code("train", "--resume", finished_run, "--config", REPO / "configs" / "fast80.yaml") == 2
    assert "drop --config" in capsys.readouterr().err


def test_an_output_dir_that_cannot_be_created_is_one_line(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("not a folder")
    assert cli_code("train", "--output-dir", tmp_path / "file.txt" / "runs", "--epochs", "1") == 2
    assert "cannot create the run folder" in capsys.readouterr().err  # before: a FileNotFoundError traceback


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["train", "--data-dir", empty, "--no-download", "--output-dir", tmp_path / "out", "--name", "run"]
    for _ in range(2):  # a retry finds the name free again
        assert cli_code(*args) == 2
        assert "CIFAR-10 not found" in capsys.readouterr().err
        assert not (tmp_path / "out" / "run").exists() and not (tmp_path / "out" / "run-2").exists()


def test_a_failed_run_with_a_kept_file_keeps_that_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    (run / "config.yaml").write_text("model: fastnet\n")
    run_folder.discard_unstarted(run)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_the_run_header_counts_one_step_as_one(cifar_dir, tmp_path, capsys):
    flags = tiny_flags(**{**SMALL_RUN, "steps": 1, "progress": "lines"})
    assert cli_code("train", *flags, "--data-dir", cifar_dir, "--output-dir", tmp_path) == 0
    assert ", 1 step of 50 (1 epoch);" in capsys.readouterr().out


def test_a_folder_left_with_only_a_dead_lock_is_reclaimed(tmp_path):
    left = tmp_path / "tiny"
    left.mkdir()
    (left / ".lock").write_text(f"pid {dead_pid()}")
    (left / "config.yaml").write_text("model: fastnet\n")
    assert run_folder.claim_new(tmp_path / "tiny") == left
    assert not (left / ".lock").exists() and not (left / "config.yaml").exists()


def test_a_live_or_started_run_keeps_its_folder(tmp_path):
    live = tmp_path / "live"
    with run_folder.RunLock(live):  # held by this process
        assert run_folder.claim_new(live) == tmp_path / "live-2"
    started = tmp_path / "started"
    started.mkdir()
    (started / ".lock").write_text(f"pid {dead_pid()}")
    (started / "last.safetensors").write_bytes(b"x")
    assert run_folder.claim_new(started) == tmp_path / "started-2"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / ".lock").write_text(f"pid {dead_pid()}")
    (foreign / "notes.txt").write_text("the user's")
    assert run_folder.claim_new(foreign) == tmp_path / "foreign-2"


def test_resume_refuses_an_edited_config_and_says_when_it_rewrites_a_deleted_one(tmp_path, cifar_dir):
    from tiny import tiny_flags

    flags = tiny_flags(epochs=2, stop_after_epochs=1, train_size=200, val_size=100)
    first = run_cli("train", *flags, "--output-dir", str(tmp_path), "--name", "run", "--data-dir", str(cifar_dir))
    assert first.returncode == 0, first.stderr
    run = tmp_path / "run"
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "epochs": 5, "lr": 0.05}))
    edited = run_cli("train", "--resume", str(run))
    assert edited.returncode == 2 and "epochs" in edited.stderr and "lr" in edited.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 5  # the edit is still there
    (run / "config.yaml").unlink()
    resumed = run_cli("train", "--resume", str(run))
    assert resumed.returncode == 0 and "was missing" in resumed.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["epochs"] == 2


def test_a_finished_run_without_its_last_checkpoint_is_told_what_is_left_never_to_overwrite(finished_run, tmp_path):
    import shutil

    run = tmp_path / "done"
    shutil.copytree(finished_run, run)
    (run / "last.safetensors").unlink()
    refused = run_cli("train", "--resume", run)
    assert refused.returncode == 2 and "--overwrite" not in refused.stderr.split("(--overwrite would")[0]
    assert "best.safetensors" in refused.stderr and f"resnet-cifar evaluate {run} --checkpoint best" in refused.stderr
    evaluated = run_cli("evaluate", run, "--checkpoint", "best")  # the advice works and loses nothing
    assert evaluated.returncode == 0 and (run / "best.safetensors").is_file() and (run / "metrics.csv").is_file()


def test_a_run_killed_in_its_first_checkpoint_write_leaves_its_name_free(tmp_path):
    """A SIGKILL inside the first atomic write leaves `.last.safetensors.<random>.tmp`; the next run of that name
    reclaims the folder (not NAME-2), and --overwrite removes what was half-written."""
    from resnet_cifar import run_folder

    run = tmp_path / "outputs" / "r"
    run.mkdir(parents=True)
    (run / run_folder.LOCK).write_text(f"pid {dead_pid()}")
    (run / ".last.safetensors.k3j9_x.tmp").write_bytes(b"half")
    (run / ".metrics.csv.q1w2e3.tmp").write_bytes(b"half")
    assert run_folder.claim_new(tmp_path / "outputs" / "r") == run and not list(run.glob(".*.tmp"))
    (run / ".last.json.z9.tmp").write_bytes(b"half")
    (run / "notes.txt").write_text("mine")
    run_folder.clear_run(run)
    assert not list(run.glob(".*.tmp")) and (run / "notes.txt").read_text() == "mine"


def test_a_damaged_metrics_csv_is_one_line_on_resume(finished_run, tmp_path):
    import shutil

    run = tmp_path / "done"
    shutil.copytree(finished_run, run)
    for damage in (b"\xff\xfe\x00 garbage", b"epoch,step\nx,y\n"):
        (run / "metrics.csv").write_bytes(damage)
        result = run_cli("train", "--resume", run)
        assert result.returncode == 2 and "metrics.csv is damaged" in result.stderr and "Traceback" not in result.stderr
