"""What `evaluate` and `plot` write, and where: never beside a bare weights file, one file per test setting."""

import json
import time

from commands import cli_code


def test_evaluating_a_weights_file_writes_to_the_output_folder_not_beside_it(finished_run, tmp_path, capsys):
    weights = tmp_path / "shelf" / "tiny.safetensors"
    weights.parent.mkdir()
    weights.write_bytes((finished_run / "last.safetensors").read_bytes())
    assert cli_code("evaluate", weights, "--tta", "0", "--output-dir", tmp_path / "out", "--device", "cpu") == 0
    out = capsys.readouterr().out
    assert "(weights: tiny, TTA level 0)" in out
    assert sorted(p.name for p in weights.parent.iterdir()) == ["tiny.safetensors"]
    assert json.loads((tmp_path / "out" / "tiny-results.json").read_text())["weights"] == "tiny"


def test_plot_of_a_runs_checkpoint_is_refused_before_any_work(finished_run, capsys):
    started = time.perf_counter()
    assert cli_code("plot", finished_run / "last.safetensors") == 2
    assert "plot needs a run folder" in capsys.readouterr().err and time.perf_counter() - started < 2


def test_results_of_a_weights_file_at_each_tta_level_do_not_overwrite_each_other(finished_run, tmp_path, capsys):
    weights = tmp_path / "tiny.safetensors"
    weights.write_bytes((finished_run / "last.safetensors").read_bytes())
    for level in ("0", "1"):
        assert cli_code("evaluate", weights, "--tta", level, "--output-dir", tmp_path / "out", "--device", "cpu") == 0
    capsys.readouterr()
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    # the run's own level (0 here) gets the plain name, as results.json does in a run folder
    assert names == ["tiny-results-last-tta1.json", "tiny-results.json"]
    assert [json.loads((tmp_path / "out" / n).read_text())["tta"] for n in names] == [1, 0]
