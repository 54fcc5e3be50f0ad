import json
import math

import pytest
import torch
from torch import nn

from resnet_cifar.experiments.degradation import DegradationSettings, run_degradation, write_degradation
from resnet_cifar.experiments.gradient_flow import (
    GradientFlowSettings,
    measure,
    run_gradient_flow,
    write_gradient_flow,
)


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
    results = run_degradation(settings, tmp_path, log=lambda _: None)
    write_degradation(results, tmp_path)
    table = json.loads((tmp_path / "degradation.json").read_text())
    assert set(table) == {"plain20", "resnet20"}
    for row in table.values():
        assert set(row) == {"train_error", "test_error"}
        assert 0 <= row["train_error"] <= 1 and 0 <= row["test_error"] <= 1
    curves = json.loads((tmp_path / "degradation_curves.json").read_text())
    assert len(curves["nets"]["plain20"]["test_error_per_epoch"]) == 1
    assert (tmp_path / "degradation.png").stat().st_size > 10_000


def test_paper_step_schedule_keeps_lr_0_1_until_half_the_budget(cifar_dir, tmp_path):
    settings = tiny_degradation(cifar_dir, epochs=2, test_images=100)
    settings.use_paper_step_schedule()
    results = run_degradation(settings, tmp_path, log=lambda _: None)
    write_degradation(results, tmp_path)
    rows = (tmp_path / "runs" / "resnet20" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    lrs = [float(row.split(",")[header.index("lr")]) for row in rows[1:]]
    assert lrs == pytest.approx([0.1, 0.001])  # last lr of epoch 1 (before the 50% milestone), of epoch 2 (after 75%)
