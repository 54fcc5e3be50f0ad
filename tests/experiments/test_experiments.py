import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from resnet_cifar.checkpoint import load_checkpoint
from resnet_cifar.experiments.degradation import DegradationSettings, run_degradation, write_degradation
from resnet_cifar.experiments.gradient_flow import (
    GradientFlowSettings,
    measure,
    run_gradient_flow,
    write_gradient_flow,
)


def auto():
    """The runtime an experiment's entry point decides (`precision: auto`) on this machine."""
    from resnet_cifar.runtime import choose_runtime

    return choose_runtime("cpu", "auto")


class ToyChain(nn.Module):
    """L one-channel 1x1 convolutions, all with weight c: a_k = c^(k+1) x. With loss = sum(output) and x = 1,
    dL/da_k = c^(L-1-k) everywhere and dL/dW_k = c^(L-1) * (number of elements), for every layer k."""

    def __init__(self, layers: int, c: float):
        super().__init__()
        convs = [nn.Conv2d(1, 1, 1, bias=False) for _ in range(layers)]
        for conv in convs:
            nn.init.constant_(conv.weight, c)
        self.stem, self.rest = convs[0], nn.ModuleList(convs[1:])

    def blocks(self):
        return list(self.rest)

    def forward(self, x):
        x = self.stem(x)
        for conv in self.rest:
            x = conv(x)
        return x


def test_instrumentation_on_a_network_with_known_gradients():
    layers, c = 5, 0.5
    x = torch.ones(2, 1, 4, 4)
    elements = x.numel()
    result = measure(ToyChain(layers, c), x, torch.zeros(2), loss_fn=lambda out, _labels: out.sum())
    assert result.conv_names == ["stem", "rest.0", "rest.1", "rest.2", "rest.3"]
    assert result.conv_grad_norms == pytest.approx([c ** (layers - 1) * elements] * layers)
    expected = [c ** (layers - 1 - k) * math.sqrt(elements) for k in range(layers)]
    assert result.activation_grad_norms == pytest.approx(expected)
    assert result.activation_rms == pytest.approx([c ** (k + 1) for k in range(layers)])
    assert result.first_to_last == pytest.approx(1.0)
    assert result.loss == pytest.approx(c**layers * elements)


def _finite(values):
    return all(math.isfinite(v) for v in values)


def test_gradient_flow_tiny_settings_write_the_documented_json(cifar_dir, tmp_path):
    settings = GradientFlowSettings(depths=(20,), steps=2, batch_size=20, train_pool=200, data_dir=str(cifar_dir))
    results = run_gradient_flow(settings, log=lambda _: None)
    write_gradient_flow(results, tmp_path)
    saved = json.loads((tmp_path / "gradient_flow.json").read_text())
    assert set(saved["nets"]) == {"plain20", "resnet20", "plain20-nobn", "resnet20-nobn"}
    for net in saved["nets"].values():
        for stage in ("init", "trained"):
            data = net[stage]
            assert len(data["conv_grad_norms"]) == 19  # every convolution of a 20-layer net (19 conv + 1 fc)
            assert len(data["activation_grad_norms"]) == 10  # stem + 9 blocks
            assert _finite(data["conv_grad_norms"]) and _finite(data["activation_grad_norms"])
            assert math.isfinite(data["first_to_last"])
    assert (tmp_path / "gradient_flow.png").stat().st_size > 10_000


def tiny_degradation(cifar_dir, epochs: int, test_images: int) -> DegradationSettings:
    return DegradationSettings(
        depths=(20,),
        epochs=epochs,
        train_size=500,
        test_images=test_images,
        clean_train_sample=100,
        val_size=100,
        data_dir=str(cifar_dir),
    )


def test_degradation_tiny_settings_write_the_documented_json(cifar_dir, tmp_path):
    settings = tiny_degradation(cifar_dir, epochs=1, test_images=200)
    results = run_degradation(settings, tmp_path, auto(), log=lambda _: None)
    write_degradation(results, tmp_path)
    table = json.loads((tmp_path / "degradation.json").read_text())
    assert set(table) == {"plain20", "resnet20"}
    for row in table.values():
        assert set(row) == {"train_error", "test_error"}
        assert 0 <= row["train_error"] <= 1 and 0 <= row["test_error"] <= 1
    curves = json.loads((tmp_path / "degradation_curves.json").read_text())
    assert len(curves["nets"]["plain20"]["test_error_per_epoch"]) == 1
    assert (tmp_path / "degradation.png").stat().st_size > 10_000


def test_paper_step_schedule_keeps_lr_0_1_until_half_the_budget(tmp_path):
    from resnet_cifar.experiments.degradation import net_config
    from resnet_cifar.train.schedule import build_schedule

    settings = DegradationSettings(epochs=2)
    settings.use_paper_step_schedule()
    config = net_config("resnet20", settings, tmp_path)
    assert config.milestones == [1.0, 1.5] and config.milestone_unit == "epoch"  # 50% and 75% of 2 epochs
    schedule = build_schedule(config, total_steps=20, steps_per_epoch=10)
    assert [schedule(step) for step in (0, 9, 10, 14, 15, 19)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_depth_study_order_puts_each_plain_net_beside_its_twin_and_extra_seeds_last():
    from resnet_cifar.experiments.depth import study_runs
    from resnet_cifar.experiments.settings import DepthSettings

    runs = study_runs(DepthSettings(plain_depths=(20, 56), residual_depths=(20, 56, 110), more_seeds={56: [0, 1]}))
    assert runs == [
        ("resnet20", 0), ("plain20", 0), ("resnet56", 0), ("plain56", 0), ("resnet110", 0), ("resnet56", 1)
    ]  # fmt: skip


@pytest.mark.parametrize("bad", [{"residual_depths": (21,)}, {"test_images": 5}, {"config": "no-such.yaml"}])
def test_depth_study_settings_refuse_what_cannot_run(bad):
    from resnet_cifar.errors import ConfigError
    from resnet_cifar.experiments.settings import DepthSettings

    with pytest.raises(ConfigError):
        DepthSettings(**bad).validate()


def test_depth_study_trains_whole_runs_and_keeps_finished_nets(cifar_dir, tmp_path, monkeypatch):
    from resnet_cifar.data.cifar10 import Split
    from resnet_cifar.experiments import depth
    from resnet_cifar.experiments.settings import DepthSettings
    from resnet_cifar.train.batches import TrainingData

    repo = Path(__file__).resolve().parents[2]
    recipe = tmp_path / "tiny.yaml"  # the study's recipe on a small validation split, single-view test: quick
    recipe.write_text(f"base: {repo / 'configs' / 'paper-resnets.yaml'}\nval_size: 100\ntta: 0\n")
    settings = DepthSettings(
        config=str(recipe), plain_depths=(), residual_depths=(20,), more_seeds={}, epochs=1,
        train_size=300, test_images=100, data_dir=str(cifar_dir),
    )  # fmt: skip
    whole_test_set = TrainingData.load_test  # each run's final test on 500 images: the code is the same, 20x quicker
    monkeypatch.setattr(TrainingData, "load_test", lambda data: Split(*(t[:500] for t in whole_test_set(data))))
    results = depth.run_depth(settings, tmp_path / "study", auto(), log=lambda _: None)
    assert list(results["nets"]) == ["resnet20-seed0"] and results["missing"] == []
    net = results["nets"]["resnet20-seed0"]
    assert (tmp_path / "study" / "runs" / "resnet20-seed0" / "results.json").is_file()  # a whole run
    assert len(net["test_error_per_epoch"]) == len(net["train_error_per_epoch"]) == net["epochs"] == 1
    assert net["steps_per_epoch"] == 300 // 128 and 0 <= net["test_error"] <= 1 and net["temperature"] > 0
    assert net["machine"] and net["precision"] in ("bf16", "fp32")
    depth.write_depth(results, tmp_path / "study")
    assert (tmp_path / "study" / "figure6.png").stat().st_size > 10_000

    def must_not_train(*args):
        raise AssertionError("a finished net was trained again")

    monkeypatch.setattr(depth, "train_net", must_not_train)
    again = depth.run_depth(settings, tmp_path / "study", auto(), log=lambda _: None)
    assert again["nets"] == json.loads(json.dumps(results["nets"]))
    other_recipe = dataclasses.replace(settings, epochs=2)  # a finished net counts only for the very configuration
    assert depth.run_depth(other_recipe, tmp_path / "study", auto(), train=False)["nets"] == {}


def test_an_interrupted_depth_study_continues_each_net_exactly(cifar_dir, tmp_path, monkeypatch, machine):
    """Ctrl-C in the middle of a net's second epoch, the same command again on a machine whose `bf16: auto` would
    choose the other precision (faked): the net goes on in the precision it began in and ends with the very weights
    and per-epoch test errors of a study that was never stopped."""
    from resnet_cifar import runtime
    from resnet_cifar.data.cifar10 import Split
    from resnet_cifar.errors import Interrupted
    from resnet_cifar.experiments import depth
    from resnet_cifar.experiments.settings import DepthSettings
    from resnet_cifar.train.batches import TrainingData
    from tiny import StopAt

    repo = Path(__file__).resolve().parents[2]
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"base: {repo / 'configs' / 'paper-resnets.yaml'}\nval_size: 100\ntta: 0\nthreads: 2\n")
    whole_test_set = TrainingData.load_test
    monkeypatch.setattr(TrainingData, "load_test", lambda data: Split(*(t[:200] for t in whole_test_set(data))))
    settings = DepthSettings(
        config=str(recipe), plain_depths=(), residual_depths=(20,), more_seeds={}, epochs=2,
        train_size=300, test_images=100, data_dir=str(cifar_dir),
    )  # fmt: skip
    straight = depth.run_depth(settings, tmp_path / "straight", auto(), log=lambda _: None)

    class StoppedOnce(depth.Trainer):
        def __init__(self, *args, callbacks=(), **kwargs):
            super().__init__(*args, callbacks=[*callbacks, StopAt(3)], **kwargs)  # step 3: inside epoch 2

    monkeypatch.setattr(depth, "Trainer", StoppedOnce)
    with pytest.raises(Interrupted):
        depth.run_depth(settings, tmp_path / "cut", auto(), log=lambda _: None)
    monkeypatch.undo()
    monkeypatch.setattr(TrainingData, "load_test", lambda data: Split(*(t[:200] for t in whole_test_set(data))))
    began_in_bf16 = runtime.choose_runtime("cpu", "auto").bf16
    machine("avx2" if began_in_bf16 else "avx512_bf16")
    assert runtime.choose_runtime("cpu", "auto").bf16 is not began_in_bf16
    resumed = depth.run_depth(settings, tmp_path / "cut", auto(), log=lambda _: None)
    a, b = (run / "runs" / "resnet20-seed0" / "last.safetensors" for run in (tmp_path / "straight", tmp_path / "cut"))
    weights_a, weights_b = load_checkpoint(a)[0], load_checkpoint(b)[0]
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a if k.startswith("model."))
    for key in ("test_error_per_epoch", "train_error_per_epoch", "test_error_tta"):
        assert resumed["nets"]["resnet20-seed0"][key] == straight["nets"]["resnet20-seed0"][key]
    assert resumed["nets"]["resnet20-seed0"]["precision"] == ("bf16" if began_in_bf16 else "fp32")


def test_table6_averages_the_seeds_of_each_depth_beside_the_published_errors():
    from resnet_cifar_lab.depth_study import table6

    def net(name, seed, error):
        return {"net": name, "seed": seed, "test_error": error, "test_error_tta": error - 0.01, "epochs": 40,
                "train_seconds": 7200, "train_error_per_epoch": [0.5, error / 2]}  # fmt: skip

    nets = [net("resnet20", 0, 0.08), net("resnet20", 1, 0.09), net("plain20", 0, 0.1), net("resnet110", 0, 0.06)]
    nets[0]["hours_by_machine"] = {"Zen 3, AVX2, fp32, 2 threads": 2.0}
    nets[1]["hours_by_machine"] = {"Zen 3, AVX2, fp32, 2 threads": 1.5, "Zen 4, AVX512_BF16, bf16, 2 threads": 0.5}
    rows = table6({"nets": {f"{n['net']}-seed{n['seed']}": n for n in nets}})
    assert [row["net"] for row in rows] == ["resnet20", "resnet110"]
    assert rows[0]["trained_on"] == ["Zen 3, AVX2, fp32, 2 threads", "Zen 4, AVX512_BF16, bf16, 2 threads"]
    assert rows[0]["test_error"] == pytest.approx(8.5) and rows[0]["test_error_std"] == pytest.approx(0.7071, abs=1e-4)
    assert rows[0]["test_error_tta"] == pytest.approx(7.5) and rows[0]["cpu_hours"] == 2
    assert rows[0]["test_error_tta_std"] == pytest.approx(0.7071, abs=1e-4) and rows[1]["test_error_tta_std"] is None
    assert rows[1]["test_error_std"] is None and rows[1]["chenyaofo"] is None and rows[1]["He et al. 2015"] == 6.43


def test_the_thesis_is_a_verdict_measured_on_the_finished_nets():
    """ResNets' test error must fall at every step of depth, plain nets' final training error rise at every step."""
    from resnet_cifar_lab.depth_study import thesis

    def net(name, seed, test, train):
        return {"net": name, "seed": seed, "test_error": test, "train_error_per_epoch": [0.5, train]}

    nets = [net("resnet20", 0, 0.092, 0.04), net("resnet20", 1, 0.090, 0.04), net("resnet56", 0, 0.070, 0.02)]
    nets += [net("plain20", 0, 0.10, 0.05), net("plain56", 0, 0.12, 0.09)]
    measured = thesis({"nets": {f"{n['net']}-seed{n['seed']}": n for n in nets}})
    assert measured["resnet_test_error"] == {20: pytest.approx(9.1), 56: pytest.approx(7.0)}
    assert measured["resnet_test_error_falls_with_depth"] is True
    assert measured["plain_train_error_rises_with_depth"] is True
    nets.append(net("resnet110", 0, 0.075, 0.01))  # worse than ResNet-56: the claim fails at the last step
    measured = thesis({"nets": {f"{n['net']}-seed{n['seed']}": n for n in nets[-1:] + nets[:3]}})
    assert measured["resnet_test_error_falls_with_depth"] is False
    assert measured["plain_train_error_rises_with_depth"] is None  # no plain net finished


def test_a_second_depth_study_on_one_folder_leaves_the_net_the_first_is_training_to_it(cifar_dir, tmp_path):
    from resnet_cifar import run_folder
    from resnet_cifar.experiments import depth
    from resnet_cifar.experiments.settings import DepthSettings

    settings = DepthSettings(
        plain_depths=(), residual_depths=(20,), more_seeds={}, epochs=1, train_size=300, test_images=100,
        data_dir=str(cifar_dir),
    )  # fmt: skip
    training = tmp_path / "study" / "runs" / "resnet20-seed0"
    lines = []
    with run_folder.RunLock(training):
        results = depth.run_depth(settings, tmp_path / "study", auto(), log=lines.append)
    assert results["nets"] == {} and results["missing"] == ["resnet20-seed0"]
    assert lines == ["resnet20-seed0: another process is training it; on to the next net"]
    assert sorted(path.name for path in training.iterdir()) == [".lock"]  # nothing of the net written by the second


def test_a_depth_net_another_process_finished_meanwhile_is_not_trained_again(tmp_path, monkeypatch):
    from resnet_cifar import run_folder
    from resnet_cifar.experiments import depth
    from resnet_cifar.experiments.settings import DepthSettings

    settings = DepthSettings(plain_depths=(), residual_depths=(20,), more_seeds={})
    monkeypatch.setattr("resnet_cifar.data.locate.load_test_sample", lambda *args: (None, None))
    result = {"net": "resnet20", "seed": 0, "test_error": 0.1}
    entry = {"config": depth.net_fingerprint(settings, "resnet20", 0), "result": result}

    def finished_while_this_one_began(run_dir):  # the other process's last epoch ends just before the lock is taken
        (tmp_path / "nets").mkdir()
        (tmp_path / "nets" / "resnet20-seed0.json").write_text(json.dumps(entry))
        return run_folder.RunLock(run_dir)

    def must_not_train(*args):
        raise AssertionError("a finished net was trained again")

    monkeypatch.setattr(depth, "held", finished_while_this_one_began)
    monkeypatch.setattr(depth, "train_net", must_not_train)
    results = depth.run_depth(settings, tmp_path, auto(), log=lambda _: None)
    assert results["nets"] == {"resnet20-seed0": result} and results["missing"] == []


def _finished_net(settings, net: str) -> dict:
    """A depth-study net finished after 3 epochs (seed 0, an hour of fp32 on Zen 3), as its run stores it."""
    from resnet_cifar.experiments import depth

    errors = [0.5, 0.3, 0.2]
    result = {
        "net": net, "seed": 0, "epochs": 3, "steps_per_epoch": 351, "train_error_per_epoch": errors,
        "test_error_per_epoch": errors, "test_error": 0.2, "test_error_tta": 0.19, "train_seconds": 3600.0,
        "machine": "AMD EPYC Zen 3 (family 25 model 1), AVX2", "precision": "fp32",
    }  # fmt: skip
    return {"config": depth.net_fingerprint(settings, net, 0), "result": result}


def test_recording_a_depth_study_adds_each_finished_net_once_and_the_ledger_alone_redraws_it(tmp_path):
    """The experiment writes into --out only; `benchmarks/experiment.py --record` adds each finished net to the ledger
    once, and a clone that has only the ledger has the nets of the study's very configuration."""
    from commands import run_cli
    from repo_scripts import run_script
    from resnet_cifar.experiments.settings import DepthSettings
    from resnet_cifar_lab.depth_study import NET_RECORD, from_ledger
    from resnet_cifar_lab.ledger import read_ledger

    flags = ["--residual-depths", "20", "--plain-depths", "20", "--more-seeds", "{}", "--report-only"]
    settings = DepthSettings(residual_depths=(20,), plain_depths=(20,), more_seeds={})
    entry = _finished_net(settings, "resnet20")
    (tmp_path / "here" / "nets").mkdir(parents=True)
    (tmp_path / "here" / "nets" / "resnet20-seed0.json").write_text(json.dumps(entry))
    done = run_cli("experiment", "depth", "--out", tmp_path / "here", *flags)
    assert done.returncode == 0, done.stderr
    assert "resnet20-seed0: test error 20.00% single view" in done.stdout
    assert "not finished: plain20-seed0" in done.stdout and (tmp_path / "here" / "figure6.png").is_file()
    ledger = tmp_path / "ledger.jsonl"
    for _ in range(2):
        run_script("benchmarks/experiment.py", "depth", "--report-only", "--record", "--ledger", ledger, "--",
                   "--out", tmp_path / "here", *flags)  # fmt: skip
    (recorded,) = read_ledger(ledger)  # once, though recorded twice; the study is unfinished: no study record yet
    assert recorded["benchmark"] == NET_RECORD and recorded["numbers"] == entry
    assert recorded["precision"] == "fp32" and recorded["seeds"] == [0]
    assert recorded["command"].startswith("resnet-cifar experiment depth --out ")
    study = from_ledger(settings, read_ledger(ledger))
    assert list(study["nets"]) == ["resnet20-seed0"] and study["missing"] == ["plain20-seed0"]


def test_some_nets_of_a_study_run_into_its_folder_keep_the_fuller_report_and_exit_0(tmp_path):
    """Training a few nets of the study into the folder of the whole one: the nets are kept and the command succeeds,
    while the report holding more nets is left as it was; asked only for a report of fewer nets, it is refused."""
    from commands import run_cli
    from resnet_cifar.experiments.settings import DepthSettings

    settings = DepthSettings(residual_depths=(20,), plain_depths=(20,), more_seeds={})
    (tmp_path / "nets").mkdir()
    for net in ("resnet20", "plain20"):
        (tmp_path / "nets" / f"{net}-seed0.json").write_text(json.dumps(_finished_net(settings, net)))
    fuller = json.dumps({"nets": {"resnet20-seed0": {}, "resnet32-seed0": {}, "plain20-seed0": {}}})
    (tmp_path / "depth.json").write_text(fuller)
    flags = ["--out", tmp_path, "--residual-depths", "20", "--plain-depths", "20"]
    trained = run_cli("experiment", "depth", *flags, "--more-seeds", "{}")
    assert trained.returncode == 0, trained.stderr
    assert "holds 3 nets and this report 2: the fuller report is kept" in trained.stdout
    assert "the nets of this run are finished and kept" in trained.stdout
    asked_for_a_report = run_cli("experiment", "depth", *flags, "--more-seeds", "{}", "--report-only")
    assert asked_for_a_report.returncode != 0 and "the fuller report is kept" in asked_for_a_report.stderr
    assert (tmp_path / "depth.json").read_text() == fuller and not (tmp_path / "figure6.png").exists()
