"""Experiment reports: never emptier than the one they replace, progress said per net."""

import pytest

from commands import cli_code


def test_report_only_of_a_missing_folder_is_refused_and_creates_nothing(tmp_path, capsys):
    assert cli_code("experiment", "data-efficiency", "--out", tmp_path / "none", "--report-only") == 2
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

    def broken(results, path):  # a plot that fails while drawing: pictures are drawn whole before any is written
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
