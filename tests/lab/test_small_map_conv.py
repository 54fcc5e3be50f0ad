"""The dense small-map convolution is a padded 3x3 convolution: the same outputs and gradients as F.conv2d in
float64 on every small map shape, as exact as oneDNN's under bf16 autocast, and a fastnet built with it is the same
network with the same parameters."""

import pytest
import torch
import torch.nn.functional as F

from resnet_cifar.models import create_model
from resnet_cifar_lab.conv_kernels import with_kernels
from resnet_cifar_lab.small_map_conv import SmallMapConv2d, dense_conv3x3, tap_placement


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def outputs_and_gradients(conv, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, *, bf16=False):
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    bias = bias.clone().requires_grad_() if bias is not None else None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = conv(x, weight, bias)
    out.backward(torch.linspace(-1, 1, out.numel()).view(out.shape).to(out.dtype))
    return out, x.grad, weight.grad, bias.grad if bias is not None else None


def reference_conv(x, weight, bias):
    return F.conv2d(x, weight, bias, padding=1)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 2), (3, 3), (2, 3), (4, 4)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_dense_conv_is_the_padded_convolution_with_its_gradients(height, width, with_bias):
    generator = torch.Generator().manual_seed(height * 10 + width)
    x = torch.randn(5, 6, height, width, dtype=torch.float64, generator=generator)
    weight = torch.randn(7, 6, 3, 3, dtype=torch.float64, generator=generator)
    bias = torch.randn(7, dtype=torch.float64, generator=generator) if with_bias else None
    expected = outputs_and_gradients(reference_conv, x, weight, bias)
    got = outputs_and_gradients(dense_conv3x3, x.contiguous(memory_format=torch.channels_last), weight, bias)
    for name, a, b in zip(("output", "input grad", "filter grad", "bias grad"), got, expected, strict=True):
        if b is not None:
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-12, rtol=1e-10), name
    assert got[0].is_contiguous(memory_format=torch.channels_last)


def test_placement_connects_each_output_pixel_to_its_in_bounds_taps():
    placement = tap_placement(3, 3, torch.device("cpu"))
    taps_per_output = placement.sum(dim=(1, 2))
    assert taps_per_output.tolist() == [4, 6, 4, 6, 9, 6, 4, 6, 4]  # corners, edges, the centre
    assert placement[4, :, 4].argmax() == 4  # the centre tap of the centre pixel is the pixel itself
    assert placement.sum(dim=1).max() == 1  # a tap of an output pixel reads at most one input pixel


def test_dense_conv_under_bf16_autocast_is_as_exact_as_onednn():
    """Against a float64 convolution of the same bf16-rounded inputs, the dense product's output and gradients
    are no further off than oneDNN's own (both round each product to bf16 once)."""
    torch.manual_seed(3)
    x = torch.randn(64, 32, 3, 3).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(32, 32, 3, 3), None
    exact = outputs_and_gradients(reference_conv, x.double(), weight.to(torch.bfloat16).double(), bias)
    onednn = outputs_and_gradients(reference_conv, x, weight, bias, bf16=True)
    dense = outputs_and_gradients(dense_conv3x3, x, weight, bias, bf16=True)
    assert dense[0].dtype == onednn[0].dtype == torch.bfloat16
    assert dense[2].dtype == torch.float32  # the master filters keep their dtype
    for name, a, b, reference in zip(("output", "input grad", "filter grad"), dense, onednn, exact, strict=False):
        assert relative_error(a, reference) < 1.5 * relative_error(b, reference) + 1e-3, name


def test_small_map_conv_runs_dense_only_on_small_maps(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "resnet_cifar_lab.small_map_conv.dense_conv3x3",
        lambda x, w, b: calls.append(x.shape[-2:]) or F.conv2d(x, w, b, padding=1),
    )
    conv = SmallMapConv2d(4, 8, max_side=3, bias=False)
    plain = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
    assert conv.state_dict().keys() == plain.state_dict().keys()
    conv(torch.randn(2, 4, 5, 5))
    assert calls == []
    conv(torch.randn(2, 4, 3, 2))
    assert calls == [(3, 2)]


def test_fastnet_with_dense_small_maps_is_the_same_network():
    options = {"widths": [16, 32, 32], "blocks": [1, 0, 1], "stem_width": 16}
    torch.manual_seed(2)
    plain = create_model("fastnet", **options).double()
    dense = with_kernels(create_model("fastnet", **options), dense_conv_max_side=3).double()
    assert dense.state_dict().keys() == plain.state_dict().keys()
    dense.load_state_dict(plain.state_dict())
    assert sum(isinstance(m, SmallMapConv2d) for m in dense.stages.modules()) == 7
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)  # the last stage runs on 4x4 then 2x2 maps
    outputs = []
    for net in (plain, dense):
        out = net(x)
        F.cross_entropy(out, torch.arange(4)).backward()
        outputs.append(out)
    assert torch.allclose(outputs[1], outputs[0], atol=1e-10)
    for (name, a), (_, b) in zip(plain.named_parameters(), dense.named_parameters(), strict=True):
        if a.grad is not None:
            assert torch.allclose(b.grad, a.grad, atol=1e-10, rtol=1e-8), name


@pytest.mark.parametrize(
    ("options", "match"),
    [({"dense_conv_max_side": -1}, "must be >= 0"), ({"dense_conv_max_side": 3, "tap_grad_max_side": 5}, "set one")],
)
def test_conflicting_kernel_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        with_kernels(create_model("fastnet", widths=[8, 8, 8]), **options)
