"""The command line misused as a new user would (issue 16): each case gets one clear line, and nothing is lost.

Most cases call `resnet_cifar.cli.main` in this process (the same parsing, checks and exit codes as the command,
without the ~4 s start-up of a subprocess); the ones about processes (signals, locks) work at that level."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from resnet_cifar import cli, run_folder
from resnet_cifar.config import load_config
from resnet_cifar.errors import ConfigError, Interrupted
from resnet_cifar.inference.classify import expand_inputs
from resnet_cifar.inference.images import load_image
from resnet_cifar.train.signals import StopSignal
from tiny import tiny_config, tiny_flags

SMALL = {
    "model_options": {"widths": [8, 16, 32], "blocks": [1, 0, 1], "stem_width": 8},
    "train_size": 100,
    "val_size": 100,
    "batch_size": 50,
    "epochs": 2,
    "tta": 0,
    "eval_batch_size": 2000,
}
TINY = tiny_flags(**SMALL, plots=True, test_at_end=True)  # 4 steps, then the test and the pictures


REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> int:
    return cli.main([str(a) for a in args])


@pytest.fixture(autouse=True)
def _no_parent_death_signal(monkeypatch):
    """`train` asks Linux for SIGTERM when its parent dies; not for the test process."""
    monkeypatch.setattr(cli.train_commands, "_stop_with_parent", lambda: None)


@pytest.fixture(scope="module")
def finished_run(cifar_dir, tmp_path_factory):
    """A tiny run trained to the end, tested, with its pictures."""
    out = tmp_path_factory.mktemp("misuse")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli.train_commands, "_stop_with_parent", lambda: None)
        assert run_cli("train", *TINY, "--data-dir", cifar_dir, "--output-dir", out, "--name", "done") == 0
    return out / "done"


# --- losing or mixing up work ---------------------------------------------------------------------------------------


def test_a_pause_is_not_part_of_the_run_and_zero_is_refused(cifar_dir, tmp_path, capsys):
    common = [*TINY, "--data-dir", cifar_dir, "--output-dir", tmp_path, "--no-plots"]
    assert run_cli("train", *common, "--name", "paused", "--stop-after-epochs", "1") == 0
    assert "stopped after 1 epoch as asked" in capsys.readouterr().out
    assert run_cli("train", "--resume", tmp_path / "paused") == 0  # before: stopped again at once, every time
    rows = (tmp_path / "paused" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "test_accuracy=" in capsys.readouterr().out
    for bad in ("0", "-1"):
        assert run_cli("train", *common, "--stop-after-epochs", bad) == 2
        assert "stop_after_epochs: must be positive" in capsys.readouterr().err


def test_two_runs_with_one_name_never_share_a_folder(tmp_path):
    first, second = run_folder.claim_new(tmp_path / "race"), run_folder.claim_new(tmp_path / "race")
    assert (first.name, second.name) == ("race", "race-2")  # the folder is claimed by creating it, atomically


def test_a_folder_in_use_is_refused_with_one_line(cifar_dir, tmp_path, capsys):
    with run_folder.RunLock(tmp_path / "busy"):
        code = run_cli(
            "train", *TINY, "--data-dir", cifar_dir, "--output-dir", tmp_path, "--name", "busy", "--overwrite"
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
    common = [*TINY, "--data-dir", cifar_dir, "--output-dir", tmp_path, "--name", "again"]
    assert run_cli("train", *common, "--overwrite", "--no-plots", "--no-test-at-end") == 0
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
    assert run_cli("train", "--resume", tmp_path / "early") == 2
    assert "has no checkpoint yet" in capsys.readouterr().err


def test_evaluating_a_weights_file_writes_to_the_output_folder_not_beside_it(finished_run, tmp_path, capsys):
    weights = tmp_path / "shelf" / "tiny.safetensors"
    weights.parent.mkdir()
    weights.write_bytes((finished_run / "last.safetensors").read_bytes())
    assert run_cli("evaluate", weights, "--tta", "0", "--output-dir", tmp_path / "out", "--device", "cpu") == 0
    out = capsys.readouterr().out
    assert "(weights: tiny, TTA level 0)" in out
    assert sorted(p.name for p in weights.parent.iterdir()) == ["tiny.safetensors"]
    assert json.loads((tmp_path / "out" / "tiny-results.json").read_text())["weights"] == "tiny"


def test_only_the_run_that_asks_publishes_outputs_inference_png(finished_run):
    assert not (finished_run.parent / "inference.png").exists()  # a tiny run's picture stays in its folder
    assert (finished_run / "inference.png").is_file()
    assert "--publish-picture" in (REPO / "Makefile").read_text()  # `make train` asks for it


# --- wrong answers without an error ---------------------------------------------------------------------------------


def test_predict_turns_phone_photos_upright(tmp_path):
    upright = Image.new("RGB", (64, 48), "white")
    upright.paste((200, 30, 30), (0, 0, 64, 12))  # a red band along the top
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways, as a phone does ...
    exif = Image.Exif()
    exif[0x0112] = 6  # ... with "rotate 90 degrees clockwise to display"
    sideways.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright.save(tmp_path / "upright.jpg", quality=95)
    difference = (load_image(tmp_path / "phone.jpg").float() - load_image(tmp_path / "upright.jpg").float()).abs()
    assert difference.mean() < 3  # JPEG noise only; read sideways they differ by ~100 on the band


def test_a_data_dir_that_is_missing_or_empty_is_an_error_not_another_copy(cifar_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESNET_CIFAR_DATA", str(cifar_dir))  # a good copy elsewhere must not be used instead
    (tmp_path / "empty").mkdir()
    assert run_cli("data", "verify", "--data-dir", tmp_path / "empty", "--no-download") == 2
    err = capsys.readouterr().err
    assert f"Looked in: {tmp_path / 'empty'} (--data-dir)." in err and "RESNET_CIFAR_DATA)" not in err
    assert run_cli("train", *TINY, "--data-dir", tmp_path / "missing", "--no-download", "--output-dir", tmp_path) == 2


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
        code = run_cli("train", *flags, "--output-dir", tmp_path)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    assert code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("k", ["0", "11", "-1", "two"])
def test_top_k_is_between_1_and_10(k, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli("predict", "x.png", "--top-k", k)
    assert stop.value.code == 2 and "--top-k" in capsys.readouterr().err


def test_a_60_megapixel_camera_jpeg_is_read(tmp_path):
    photo = Image.new("RGB", (9504, 6336), (30, 90, 200))
    photo.paste((250, 250, 250), (0, 0, 9504, 3168))
    photo.save(tmp_path / "camera.jpg", quality=80)
    del photo
    started = time.perf_counter()
    tensor = load_image(tmp_path / "camera.jpg")
    assert time.perf_counter() - started < 2.0  # decoded at 1/8 scale by the JPEG decoder
    assert tensor.shape == (3, 32, 32) and tensor[:, 2, 16].tolist() == pytest.approx([250, 250, 250], abs=6)


# --- tracebacks instead of one line --------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", ["5", "99"])
def test_export_opsets_outside_the_exporters_range_are_one_line(opset, tmp_path, capsys):
    assert run_cli("export", "--format", "onnx", "--opset", opset, "--output", tmp_path / "m.onnx") == 2
    assert "--opset: this PyTorch exports ONNX opsets 7 to" in capsys.readouterr().err


def test_export_into_a_folder_names_the_file(tmp_path, capsys):
    assert run_cli("export", "--format", "torchscript", "--output", tmp_path) == 0
    assert (tmp_path / "fastnet.pt").is_file()


def test_plot_of_a_runs_checkpoint_is_refused_before_any_work(finished_run, capsys):
    started = time.perf_counter()
    assert run_cli("plot", finished_run / "last.safetensors") == 2
    assert "plot needs a run folder" in capsys.readouterr().err and time.perf_counter() - started < 2


def test_an_interrupted_command_exits_like_a_shell_does(monkeypatch, capsys):
    def stopped(args):
        raise Interrupted(signal.SIGINT, "ckpt")

    args = cli.build_parser().parse_args(["experiment", "degradation", "--quick"])
    monkeypatch.setattr(args, "func", stopped)
    assert cli._run(args) == 130


def test_an_interrupted_experiment_continues_its_sub_run(cifar_dir, tmp_path):
    from resnet_cifar.experiments.subruns import continue_from_checkpoint
    from resnet_cifar.train.loop import Callback
    from tiny import make_trainer

    config = tiny_config(**SMALL, data_dir=str(cifar_dir))

    class StopAfterThree(Callback):
        def on_step(self, trainer):
            if trainer.position.step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted):
        make_trainer(config, tmp_path / "sub", callbacks=[StopAfterThree()]).fit()
    again = make_trainer(config, tmp_path / "sub")
    assert continue_from_checkpoint(again) and again.position.step == 3
    other = make_trainer(tiny_config(**SMALL, data_dir=str(cifar_dir), lr=0.05), tmp_path / "sub")
    assert not continue_from_checkpoint(other)  # another configuration starts afresh


# --- consistency and small things ----------------------------------------------------------------------------------


def test_weights_and_checkpoint_mean_the_same_everywhere(finished_run, capsys):
    assert run_cli("evaluate", "--weights", "best") == 2
    assert "use --checkpoint best" in capsys.readouterr().err
    assert run_cli("predict", "x.png", "--weights", finished_run, "--checkpoint", "best", "--device", "cpu") == 1
    assert "no such file or folder" in capsys.readouterr().out  # the weights loaded; only the image is missing


def test_resuming_a_finished_run_reports_its_results_without_testing_again(finished_run, capsys):
    results = finished_run / "results.json"
    before = results.stat().st_mtime_ns
    assert run_cli("train", "--resume", finished_run) == 0
    out = capsys.readouterr().out
    assert "has finished all 4 steps" in out and "test_accuracy=" in out
    assert results.stat().st_mtime_ns == before


def test_resume_with_a_config_file_is_refused(finished_run, capsys):
    assert run_cli("train", "--resume", finished_run, "--config", REPO / "configs" / "fast80.yaml") == 2
    assert "drop --config" in capsys.readouterr().err


def test_links_in_a_predicted_folder_are_reported_in_their_places(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "z.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    entries = expand_inputs([str(tmp_path)])
    assert [(Path(str(e.path if hasattr(e, "path") else e)).name, getattr(e, "error", None)) for e in entries] == [
        ("a.png", None),
        ("gone.png", "broken symbolic link"),
        ("loop", "symbolic link to a folder: not followed (name it to include it)"),
        ("z.png", None),
    ]


def test_synonyms_of_config_keys_get_a_did_you_mean():
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        load_config(None, {"learning_rate": 0.1})


# --- found by trying the CLI as a newcomer, beyond the list -------------------------------------------------


def test_an_output_dir_that_cannot_be_created_is_one_line(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("not a folder")
    assert run_cli("train", "--output-dir", tmp_path / "file.txt" / "runs", "--epochs", "1") == 2
    assert "cannot create the run folder" in capsys.readouterr().err  # before: a FileNotFoundError traceback


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("x")
    assert run_cli("data", "verify", "--data-dir", tmp_path / "notes.txt") == 2
    assert "is a file, not a CIFAR-10 folder" in capsys.readouterr().err  # before: FileExistsError traceback


def test_more_micro_batches_than_images_is_refused_before_loading_data(capsys):
    assert run_cli("train", "--accumulate", "1000", "--batch-size", "128", "--data-dir", "/nonexistent") == 2
    assert "accumulate: 1000 micro-batches of a 128-image batch" in capsys.readouterr().err


def test_file_system_refusals_are_one_line(monkeypatch, capsys):
    def refused(args):
        raise PermissionError(13, "Permission denied", "outputs/fast80/metrics.csv")

    args = cli.build_parser().parse_args(["models"])
    monkeypatch.setattr(args, "func", refused)
    assert cli._run(args) == 1
    assert capsys.readouterr().err == "resnet-cifar: error: Permission denied: outputs/fast80/metrics.csv\n"


# --- issue 20: unknown devices, batch sizes, threads ---------------------------------------------------------------


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "cuda:7"])
def test_unknown_or_unavailable_devices_are_one_line_in_every_command(device, finished_run, tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    commands = [
        ["train", "--device", device, "--output-dir", tmp_path / "out"],
        ["evaluate", finished_run, "--device", device],
        ["plot", finished_run, "--device", device],
        ["predict", tmp_path / "x.png", "--device", device],
        ["export", "--format", "onnx", "--device", device, "--output", tmp_path / "m.onnx"],
        ["experiment", "data-efficiency", "--quick", "--device", device, "--out", tmp_path / "exp"],
    ]
    for command in commands:
        assert run_cli(*command) == 2, command
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "device" in err and "Traceback" not in err, (command, err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("size", ["0", "-5"])
def test_evaluate_batch_sizes_below_one_are_refused(size, finished_run, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli("evaluate", finished_run, "--batch-size", size)
    assert stop.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_more_threads_than_cores_are_refused_before_any_work(tmp_path, capsys):
    assert run_cli("train", "--threads", "999", "--output-dir", tmp_path) == 2
    assert "threads: must be 0 (one per core) to" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


# --- issue 21: nothing lost, nothing misleading ------------------------------------------------------------------


def test_report_only_of_a_missing_folder_is_refused_and_creates_nothing(tmp_path, capsys):
    assert run_cli("experiment", "data-efficiency", "--out", tmp_path / "none", "--report-only") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no data-efficiency points" in err
    assert not (tmp_path / "none").exists()


def test_a_report_never_replaces_a_fuller_one_and_an_empty_one_is_refused(tmp_path):
    from resnet_cifar.experiments.study_reports import ReportError, write_report

    def plot(results, path):
        path.write_bytes(b"picture of %d" % len(results["points"]))
        return path

    full = {"points": [1, 2, 3]}
    write_report(tmp_path, "report.json", full, "points", pictures={"report.png": plot})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ReportError, match="holds 3 points and this report 1: the fuller report is kept"):
        write_report(tmp_path, "report.json", {"points": [9]}, "points", pictures={"report.png": plot})
    with pytest.raises(ReportError, match="nothing to report"):
        write_report(tmp_path, "report.json", {"points": []}, "points", pictures={"report.png": plot})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    def broken(results, path):
        path.write_bytes(b"half a pict")
        raise RuntimeError("the plot failed half-way")

    with pytest.raises(RuntimeError):
        write_report(tmp_path, "report.json", {"points": [1, 2, 3, 4]}, "points", pictures={"report.png": broken})
    assert (tmp_path / "report.png").read_bytes() == b"picture of 3"  # the old picture, whole; no partial file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.png"]


def test_every_experiments_report_goes_through_the_same_rule(tmp_path):
    from resnet_cifar.experiments.degradation import write_degradation
    from resnet_cifar.experiments.gradient_flow import write_gradient_flow
    from resnet_cifar.experiments.study_reports import ReportError

    for write in (write_gradient_flow, write_degradation):
        with pytest.raises(ReportError, match="nothing to report"):
            write({"settings": {}, "nets": {}, "total_seconds": 0}, tmp_path / write.__name__)
        assert not (tmp_path / write.__name__).exists()


def test_experiments_say_which_net_of_how_many_and_show_steps_off_a_terminal(cifar_dir, capsys):
    from resnet_cifar.experiments.gradient_flow import run_gradient_flow
    from resnet_cifar.experiments.settings import GradientFlowSettings
    from resnet_cifar.experiments.study_reports import NetProgress

    settings = GradientFlowSettings(depths=(20,), norms=("bn",), steps=3, train_pool=100, batch_size=20)
    settings.data_dir = str(cifar_dir)
    lines: list[str] = []
    run_gradient_flow(settings, log=lines.append)
    assert [line.split(":")[0] for line in lines if line.startswith("net ")] == ["net 1/2 plain20", "net 2/2 resnet20"]
    assert "ETA" in lines[2]  # after the first net the rest has an ETA
    assert "step 3/3" in capsys.readouterr().out  # the steps of a net, as training shows them in a log

    now = [0.0]
    said: list[str] = []
    counter = NetProgress(4, said.append, clock=lambda: now[0])
    counter.skip()
    counter.start("b")
    now[0] = 60.0
    counter.done()
    counter.start("c")
    assert said == ["net 2/4 b", "net 3/4 c; ETA 2m00s for the rest"]


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["train", "--data-dir", empty, "--no-download", "--output-dir", tmp_path / "out", "--name", "run"]
    for _ in range(2):  # a retry finds the name free again
        assert run_cli(*args) == 2
        assert "CIFAR-10 not found" in capsys.readouterr().err
        assert not (tmp_path / "out" / "run").exists() and not (tmp_path / "out" / "run-2").exists()


def test_a_failed_run_with_a_kept_file_keeps_that_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    (run / "config.yaml").write_text("model: fastnet\n")
    run_folder.discard_unstarted(run)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_results_of_a_weights_file_at_each_tta_level_do_not_overwrite_each_other(finished_run, tmp_path, capsys):
    weights = tmp_path / "tiny.safetensors"
    weights.write_bytes((finished_run / "last.safetensors").read_bytes())
    for level in ("0", "1"):
        assert run_cli("evaluate", weights, "--tta", level, "--output-dir", tmp_path / "out", "--device", "cpu") == 0
    capsys.readouterr()
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    # the run's own level (0 here) gets the plain name, as results.json does in a run folder
    assert names == ["tiny-results-last-tta1.json", "tiny-results.json"]
    assert [json.loads((tmp_path / "out" / n).read_text())["tta"] for n in names] == [1, 0]


def test_weights_without_metadata_name_the_flags_that_work(finished_run, tmp_path, capsys):
    from safetensors.torch import save_file

    from resnet_cifar.checkpoint import load_checkpoint, split_prefix

    tensors, _ = load_checkpoint(finished_run / "last.safetensors")
    save_file(split_prefix(tensors, "model"), str(tmp_path / "raw.safetensors"))
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert run_cli("predict", tmp_path / "x.png", "--weights", tmp_path / "raw.safetensors") == 2
    assert "pass --model NAME" in capsys.readouterr().err
    options = json.dumps(SMALL["model_options"])
    flags = ["--weights", tmp_path / "raw.safetensors", "--model", "fastnet", "--model-options", options]
    assert run_cli("predict", tmp_path / "x.png", "--json", *flags) == 0
    assert run_cli("export", "--format", "torchscript", "--output", tmp_path / "m.pt", *flags) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("last.json", b'{"format": 1}', "is a JSON file"),
        ("model.onnx", b"\x08\x07\x12\x07pytorch", "is an ONNX model"),
        ("model.pt", b"\x80\x02}q\x00.", "is a pickle (torch.save) file, which is never unpickled"),
        ("photo.png", b"\x89PNG\r\n\x1a\n0000", "is an image"),
    ],
)
def test_weights_of_another_kind_say_what_they_are(name, content, kind, tmp_path, capsys):
    (tmp_path / name).write_bytes(content)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert run_cli("predict", tmp_path / "x.png", "--weights", tmp_path / name) == 2
    err = capsys.readouterr().err
    assert kind in err and "expected a .safetensors file" in err and "corrupted" not in err


def test_the_model_table_comes_from_the_shipped_file_without_building_models(monkeypatch, capsys):
    from resnet_cifar.models import summary

    monkeypatch.setattr(summary, "model_table", lambda *a, **k: pytest.fail("models were built"))
    assert run_cli("models") == 0
    table = capsys.readouterr().out
    assert "| fastnet 32-64-128 (make train) | fast | 8 | 0.42M |" in table  # the README's default net, by name


def test_experiment_help_gives_each_default_once(capsys):
    with pytest.raises(SystemExit):
        run_cli("experiment", "gradient-flow", "--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "$RESNET_CIFAR_DATA, then ./data)" in text


def test_data_verify_only_reports_and_never_downloads(tmp_path, monkeypatch, capsys):
    from resnet_cifar.data import locate

    monkeypatch.setattr(locate, "download_file", lambda *a, **k: pytest.fail("verify downloaded"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RESNET_CIFAR_DATA", str(tmp_path / "nowhere"))
    assert run_cli("data", "verify") == 2
    assert "CIFAR-10 not found" in capsys.readouterr().err


def test_the_run_header_counts_one_step_as_one(cifar_dir, tmp_path, capsys):
    flags = tiny_flags(**{**SMALL, "steps": 1, "progress": "lines"})
    assert run_cli("train", *flags, "--data-dir", cifar_dir, "--output-dir", tmp_path) == 0
    assert ", 1 step of 50 (1 epoch);" in capsys.readouterr().out


def test_load_cifar10_takes_data_dir_as_the_cli_names_it(cifar_dir):
    from resnet_cifar.data import load_cifar10

    images, labels = load_cifar10(data_dir=cifar_dir, split="test")
    assert images.shape == (10_000, 3, 32, 32) and len(labels) == 10_000


def test_benchmarks_take_any_model_and_say_missing_data_in_one_line(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "RESNET_CIFAR_DATA": str(tmp_path / "nowhere"), "RESNET_CIFAR_URL": "http://127.0.0.1:9/x"}
    command = [sys.executable, str(REPO / "benchmarks" / "throughput.py"), "--model", "resnet20", "--steps", "1"]
    command += ["--batch-size", "16", "--peak-size", "512"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "train      fp32" in result.stdout  # resnet20 was measured (fastnet's options are fastnet's alone)
    assert "Traceback" not in result.stderr and result.stderr.strip().startswith("throughput.py: error: CIFAR-10")
