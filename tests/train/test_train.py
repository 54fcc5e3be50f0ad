import dataclasses
from pathlib import Path

import pytest
import torch

from resnet_cifar.checkpoint import load_checkpoint, recorded_precision, save_checkpoint
from resnet_cifar.config import load_config
from resnet_cifar.errors import CheckpointError, ConfigError, Interrupted
from resnet_cifar.evaluate.metrics import accuracy, confusion_matrix, per_class_accuracy, summarize
from resnet_cifar.run_folder import TIMING_COLUMNS, read_metrics
from resnet_cifar.train.muon import orthogonalize
from resnet_cifar.train.schedule import Schedule, build_schedule
from tiny import StopAt, make_trainer, tiny_config


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(run_dir / "last.safetensors")
    return {k: v for k, v in tensors.items() if not k.startswith("rng.")}


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


# --- learning ------------------------------------------------------------------------------------------------------


def test_a_tiny_real_run_learns(cifar_dir, tmp_path):
    trainer = make_trainer(tiny_config(epochs=4, data_dir=str(cifar_dir)), tmp_path / "run")
    trainer.fit()
    rows = trainer.history
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.2
    assert rows[-1]["val_acc"] > 0.25  # chance is 0.10
    assert trainer.position.best_val_acc == max(r["val_acc"] for r in rows if r["val_acc"] is not None)


def test_muon_optimizer_steps_its_sgd_groups_exactly_as_torch_sgd():
    from resnet_cifar.train.muon import MuonWithSGD

    torch.manual_seed(0)
    ours, theirs = torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)
    theirs.load_state_dict(ours.state_dict())
    settings = {"lr": 0.1, "momentum": 0.85, "nesterov": True}
    optimizers = (
        MuonWithSGD([{"params": list(ours.parameters()), "weight_decay": 0.01}], **settings),
        torch.optim.SGD([{"params": list(theirs.parameters()), "weight_decay": 0.01}], **settings),
    )
    x = torch.randn(16, 6)
    for _ in range(4):
        for model, optimizer in zip((ours, theirs), optimizers, strict=True):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-7, rtol=0)


def test_muon_orthogonalizes_the_filters_update_and_a_tiny_run_learns_and_resumes(cifar_dir, tmp_path):
    gradient = torch.randn(32, 16 * 9) * torch.logspace(-3, 0, 16 * 9)  # badly conditioned
    singular = torch.linalg.svdvals(orthogonalize(gradient, steps=5))
    assert singular.min() > 0.5 and singular.max() < 1.5  # Muon's quintic iteration: all near 1, not exactly 1
    options = {"optimizer": "muon", "muon_lr": 0.2, "lr": 0.05, "epochs": 3, "data_dir": str(cifar_dir)}
    trainer = make_trainer(tiny_config(**options), tmp_path / "learns")
    groups = trainer.optimizer.param_groups
    (filters,) = [g for g in groups if g["orthogonalize"]]
    assert all(p.ndim == 4 and p.requires_grad for p in filters["params"]) and filters["lr_scale"] == 4.0
    assert not any(p.ndim == 4 and p.requires_grad for g in groups if not g["orthogonalize"] for p in g["params"])
    trainer.fit()
    rows = trainer.history
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.2 and rows[-1]["val_acc"] > 0.25
    conv = trainer.model.stages[0][0][0].weight  # the norm it is held at (before its last step)
    assert conv.norm().item() == pytest.approx(conv.shape[0] ** 0.5, rel=0.3)
    # stopped at step 13 of 20 and resumed: bit for bit the same weights and momentum as straight through
    options["epochs"] = 2
    make_trainer(tiny_config(**options), tmp_path / "run").fit()
    with pytest.raises(Interrupted):
        make_trainer(tiny_config(**options), tmp_path / "resumed", callbacks=[StopAt(13)]).fit()
    resumed = make_trainer(tiny_config(**options), tmp_path / "resumed")
    resumed.load(tmp_path / "resumed" / "last.safetensors")
    resumed.fit()
    straight, again = final_state(tmp_path / "run"), final_state(tmp_path / "resumed")
    assert straight.keys() == again.keys() and any(k.startswith("optimizer.momentum") for k in straight)
    assert load_checkpoint(tmp_path / "run" / "last.safetensors")[1]["optimizer"]["name"] == "muon"
    assert all(torch.equal(straight[k], again[k]) for k in straight)


# EMA state, a crop size that changes by epoch, alternating flips and a scaled BN-shift lr must resume too
RESUME_OPTIONS = {"ema": 0.9, "crop_size": 24, "alternate_flips": True, "bias_lr_scale": 8.0}


@pytest.fixture(scope="module")
def straight_run(cifar_dir, tmp_path_factory):
    """The uninterrupted reference for every resume test (trained once)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    make_trainer(tiny_config(data_dir=str(cifar_dir), **RESUME_OPTIONS), run).fit()
    return run


@pytest.mark.parametrize("stop_step", [7, 10, 23])  # mid-epoch, epoch boundary, last epoch
def test_resume_is_exact(cifar_dir, tmp_path, stop_step, straight_run):
    config = tiny_config(data_dir=str(cifar_dir), **RESUME_OPTIONS)
    with pytest.raises(Interrupted):
        make_trainer(config, tmp_path / "resumed", callbacks=[StopAt(stop_step)]).fit()
    _, meta = load_checkpoint(tmp_path / "resumed" / "last.safetensors")
    assert meta["step"] == stop_step
    resumed = make_trainer(config, tmp_path / "resumed")
    resumed.load(tmp_path / "resumed" / "last.safetensors")
    resumed.fit()

    straight, again = final_state(straight_run), final_state(tmp_path / "resumed")
    assert straight.keys() == again.keys()
    for name in straight:
        assert torch.equal(straight[name], again[name]), name
    assert without_timing(read_metrics(straight_run / "metrics.csv")) == without_timing(
        read_metrics(tmp_path / "resumed" / "metrics.csv")
    )


def test_same_seed_same_run_other_seed_other_run(cifar_dir, tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        make_trainer(tiny_config(data_dir=str(cifar_dir), seed=seed, epochs=1), tmp_path / name).fit()
    a, b, c = (final_state(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# --- schedules -----------------------------------------------------------------------------------------------------


def test_batch_norm_shifts_can_learn_faster_with_the_same_decay_per_step(cifar_dir, tmp_path):
    config = tiny_config(data_dir=str(cifar_dir), bias_lr_scale=64.0, weight_decay=1e-3)
    trainer = make_trainer(config, tmp_path / "run")
    model, groups = trainer.model, trainer.optimizer.param_groups
    shifts = {id(m.bias) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    (scaled,) = [g for g in groups if g["lr_scale"] != 1]
    assert {id(p) for p in scaled["params"]} == shifts
    assert scaled["lr_scale"] == 64 and scaled["weight_decay"] == pytest.approx(1e-3 / 64)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    images, labels = trainer.stream.batch(trainer.stream.plan(0), 0)
    trainer._step(images, labels)
    lr = trainer.parts.schedule(0)
    assert scaled["lr"] == pytest.approx(64 * lr) and groups[0]["lr"] == pytest.approx(lr)


def test_schedules_by_hand():
    step = Schedule("step", 0.1, 100, milestones=(50, 75))
    assert [step(s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    onecycle = Schedule("onecycle", 1.0, 100, warmup_steps=25, warmup_start=0.2)
    assert onecycle(0) == pytest.approx(0.2)
    assert onecycle(25) == pytest.approx(1.0)
    assert onecycle(100) == pytest.approx(0.0)
    assert onecycle(62.5) == pytest.approx(0.5)
    cosine = Schedule("cosine", 1.0, 110, warmup_steps=10, final=0.1)
    assert cosine(60) == pytest.approx(0.55)
    assert cosine(110) == pytest.approx(0.1)


def test_paper_schedule_from_its_config():
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "archive" / "paper-resnet110.yaml")
    schedule = build_schedule(config, config.steps, 351)
    assert config.steps == 64_000 and config.batch_size == 128 and config.weight_decay == 1e-4
    assert [schedule(s) for s in (0, 399, 400, 31_999, 32_000, 48_000)] == pytest.approx(
        [0.01, 0.01, 0.1, 0.1, 0.01, 0.001]
    )


# --- metrics -------------------------------------------------------------------------------------------------------


def test_metrics_by_hand():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 0.0, 1.0]])
    labels = torch.tensor([0, 2, 2, 1])
    assert accuracy(logits, labels) == pytest.approx(0.5)
    assert accuracy(logits, labels, k=2) == pytest.approx(0.75)
    confusion = confusion_matrix(logits.argmax(1), labels, 3)
    assert confusion.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert per_class_accuracy(confusion).tolist() == pytest.approx([1.0, 0.0, 0.5])
    summary = summarize(logits, labels, ("a", "b", "c"))
    assert summary["per_class"] == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert summary["top1"] == pytest.approx(0.5)


# --- configuration -------------------------------------------------------------------------------------------------


def test_yaml_then_flags(tmp_path):
    (tmp_path / "base.yaml").write_text("model: resnet32\nlr: 0.05\nepochs: 7\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nlr: 0.3\n")
    config = load_config(tmp_path / "child.yaml", {"epochs": 2})
    assert (config.model, config.lr, config.epochs, config.name) == ("resnet32", 0.3, 2.0, "child")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learning_rate": 0.1}, "unknown config key 'learning_rate'"),
        ({"batch_sise": 64}, "did you mean 'batch_size'"),
        ({"lr": "fast"}, "lr: expected float"),
        ({"epochs": True}, "epochs: expected float"),
        ({"batch_size": 0}, "batch_size: must be positive"),
        ({"lr": -0.1}, "lr: must be positive, got -0.1"),
        ({"train_size": 45_010}, "larger than the 45000 images"),
        ({"train_size": 1005}, "multiple of 10"),
        ({"train_size": 7}, "train_size: must be a positive multiple of 10"),
        ({"train_size": 50, "batch_size": 128}, "batch_size: 128 is larger than train_size 50; use --batch-size 50"),
        ({"model": "resnet21"}, "unknown model 'resnet21'"),
        ({"schedule": "exponential"}, "schedule: must be one of"),
        ({"tta": 3}, "tta: must be one of"),
        ({"optimizer": "adam"}, "optimizer: must be one of sgd, muon"),
        ({"alternate_flips": True, "flip": False}, "alternate_flips: needs flip: true"),
        ({"bias_lr_scale": 0}, "bias_lr_scale: must be positive"),
    ],
)
def test_bad_configs_fail_with_one_clear_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(None, overrides)
    assert "\n" not in str(info.value)


def test_bad_yaml_files(tmp_path):
    (tmp_path / "broken.yaml").write_text("lr: [0.1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_every_shipped_config_is_valid():
    for path in sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")):
        load_config(path)


# --- checkpoints ---------------------------------------------------------------------------------------------------


def test_checkpoint_round_trip_and_tamper_detection(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    tensors = {"model.w": torch.randn(3, 4), "model.b": torch.zeros(2, dtype=torch.bfloat16), "n": torch.tensor(5)}
    save_checkpoint(path, tensors, {"step": 3})
    loaded, meta = load_checkpoint(path)
    assert meta["step"] == 3 and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert (tmp_path / "ckpt.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left

    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # flip bits inside the tensor data
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="ckpt.safetensors: checksum mismatch"):
        load_checkpoint(path)
    path.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(CheckpointError, match="ckpt.safetensors is not a readable safetensors checkpoint"):
        load_checkpoint(path)


def test_precision_auto_is_decided_once_recorded_as_the_answer_and_kept_on_resume(cifar_dir, tmp_path, machine):
    """`precision: auto` is the request; the answer is decided once, when the run starts, and stored once (the
    checkpoint's runtime), the config keeping the request. A resume on a machine whose facts would now decide the
    other way (faked here) keeps the recorded precision and ends bit-identical to the straight run."""
    from resnet_cifar import cli, runtime
    from resnet_cifar.train.session import resume_config, run_training

    config = tiny_config(data_dir=str(cifar_dir), precision="auto", epochs=2)
    here = runtime.choose_runtime("cpu", "auto").precision
    run_training(dataclasses.replace(config, output_dir=str(tmp_path), name="straight"))
    with pytest.raises(Interrupted):
        make_trainer(config, tmp_path / "resumed", callbacks=[StopAt(13)]).fit()
    _, meta = load_checkpoint(tmp_path / "resumed" / "last.safetensors")
    assert meta["config"]["precision"] == "auto" and meta["runtime"]["precision"] == here

    machine("avx2" if here == "bf16" else "avx512_bf16")  # `auto` would now choose the other precision
    assert runtime.choose_runtime("cpu", "auto").precision != here
    assert cli.main(["train", "--resume", str(tmp_path / "resumed")]) == 0
    straight, again = final_state(tmp_path / "straight"), final_state(tmp_path / "resumed")
    assert all(torch.equal(straight[k], again[k]) for k in straight)
    _, meta = load_checkpoint(tmp_path / "resumed" / "last.safetensors")
    assert recorded_precision(meta) == here
    other = "fp32" if here == "bf16" else "bf16"
    with pytest.raises(ConfigError, match="cannot change precision when resuming"):
        resume_config(tmp_path / "resumed", {"precision": other})


def test_a_record_with_a_key_that_is_not_todays_is_refused_with_the_key_it_means():
    """A recorded configuration is read by the one typed reader: a key of another trainer or version names ours."""
    from resnet_cifar.config import config_from_record

    assert config_from_record({"precision": "bf16", "seed": 3}).precision == "bf16"
    with pytest.raises(ConfigError, match="unknown config key 'bf16'; did you mean 'precision'"):
        config_from_record({"bf16": True, "seed": 3})
