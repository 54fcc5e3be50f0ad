"""The tap-by-tap filter gradient computes what oneDNN's convolution backward computes, in fp32 and under bf16
autocast, and a fastnet built with it is the same function with the same parameters."""

import pytest
import torch
import torch.nn.functional as F

from repo_scripts import run_script
from resnet_cifar.models import create_model
from resnet_cifar_lab.conv_kernels import with_kernels
from resnet_cifar_lab.tap_conv import TapGradConv2d, tap_weight_grad


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize(("kernel", "padding", "side"), [(3, 1, 5), (3, 1, 2), (2, 0, 6), (3, 0, 4)])
def test_tap_weight_grad_equals_the_convolution_backward(kernel, padding, side):
    torch.manual_seed(0)
    x = torch.randn(6, 5, side, side).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(7, 5, kernel, kernel, requires_grad=True)
    out = F.conv2d(x, weight, padding=padding)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    assert torch.allclose(tap_weight_grad(x, grad_out, kernel, padding), weight.grad, atol=1e-4, rtol=1e-4)


def twin_convs(max_side: int, bias: bool) -> tuple[torch.nn.Conv2d, TapGradConv2d]:
    torch.manual_seed(1)
    plain = torch.nn.Conv2d(8, 16, 3, padding=1, bias=bias)
    taps = TapGradConv2d(8, 16, 3, padding=1, bias=bias, max_side=max_side)
    taps.load_state_dict(plain.state_dict())
    return plain, taps


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_tap_conv_matches_conv2d_outputs_and_every_gradient(bf16, bias):
    plain, taps = twin_convs(max_side=8, bias=bias)
    x = torch.randn(4, 8, 7, 7).contiguous(memory_format=torch.channels_last)
    results = []
    for conv in (plain, taps):
        inputs = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = conv(inputs)
        out.float().square().sum().backward()
        results.append((out, inputs.grad, conv.weight.grad, conv.bias.grad if bias else None))
    (out_a, gx_a, gw_a, gb_a), (out_b, gx_b, gw_b, gb_b) = results
    assert out_a.dtype == out_b.dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert gw_b.dtype == torch.float32  # the master weights keep their dtype
    tolerance = 2e-2 if bf16 else 1e-5
    assert relative_error(out_b, out_a) < tolerance
    assert relative_error(gx_b, gx_a) < tolerance
    assert relative_error(gw_b, gw_a) < tolerance
    if bias:
        assert relative_error(gb_b, gb_a) < tolerance


def test_tap_conv_leaves_large_maps_and_inference_to_conv2d(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "resnet_cifar_lab.tap_conv._TapGradConvFunction.apply",
        lambda x, w, p: calls.append(x.shape) or F.conv2d(x, w, padding=p),
    )
    _, taps = twin_convs(max_side=4, bias=False)
    taps(torch.randn(2, 8, 5, 5))  # larger than max_side
    with torch.no_grad():
        taps(torch.randn(2, 8, 3, 3))  # no gradient wanted
    assert calls == []
    taps(torch.randn(2, 8, 4, 4))
    assert len(calls) == 1


def test_tap_conv_rejects_strided_convolutions():
    with pytest.raises(ValueError, match="stride-1"):
        TapGradConv2d(8, 8, 3, padding=1, stride=2, max_side=4)


def test_fastnet_with_tap_gradients_is_the_same_network():
    options = {"widths": [16, 32, 32], "blocks": [1, 0, 1], "stem_width": 16}
    torch.manual_seed(2)
    plain = create_model("fastnet", **options)
    taps = with_kernels(create_model("fastnet", **options), tap_grad_max_side=8)
    assert taps.state_dict().keys() == plain.state_dict().keys()
    taps.load_state_dict(plain.state_dict())
    assert sum(isinstance(m, TapGradConv2d) for m in taps.stages.modules()) == 7  # every 3x3 after the stem
    x = torch.randn(4, 3, 32, 32)
    for net in (plain, taps):
        F.cross_entropy(net(x), torch.arange(4)).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), taps.named_parameters(), strict=True):
        assert relative_error(b.grad, a.grad) < 1e-4, name
    with pytest.raises(ValueError, match="must be >= 0"):
        with_kernels(plain, tap_grad_max_side=-1)


def test_conv_backward_benchmark_races_layers_and_whole_steps(tmp_path):
    """The benchmark behind tap_grad_max_side and dense_conv_max_side runs end to end on a small fastnet and prints
    both of its races."""
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model: fastnet\nmodel_options: {widths: [8, 16, 16], stem: whiten, stem_width: 12}\n"
        "batch_size: 8\nprecision: fp32\n"
    )
    flags = ["--config", config, "--crop-sizes", "16", "--rounds", "1"]
    races = ["--whole-steps", "--max-sides", "0", "7", "--dense-sides", "3"]
    printed = run_script("benchmarks/conv_backward.py", *flags, *races)
    assert "16 px, all convolutions:" in printed
    assert "taps/native" in printed  # the stride-1 layers were raced against the per-tap products
    assert "dense/native" in printed  # and the 3x3 and 1x1 maps of the last stage against dense products
    steps = next(line for line in printed.splitlines() if "whole training steps" in line)
    for variant in ("tap_grad_max_side 0: ", "tap_grad_max_side 7: ", "dense_conv_max_side 3: "):
        assert variant in steps
