import pickle

import pytest
import torch
from torch import nn

from resnet_cifar.errors import ConfigError
from resnet_cifar.models import count_macs, count_parameters, create_model, list_models, model_spec
from resnet_cifar.models.layers import ZeroPadShortcut

ALL_MODELS = list_models()


def test_registry_lists_the_family():
    for name in [
        "resnet20",
        "resnet56",
        "resnet110",
        "resnet1202",
        "plain56",
        "resnet18",
        "resnet152",
        "preact_resnet18",
        "preact_resnet110",
        "preact_resnet164",
    ]:
        assert name in ALL_MODELS
    assert list_models("plain*") == ["plain20", "plain32", "plain44", "plain56", "plain110"]


def test_unknown_model_suggests_a_name():
    with pytest.raises(ConfigError, match="did you mean 'resnet56'"):
        create_model("resnet65")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_every_model(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if model_spec(n).paper_params_m])
def test_parameter_counts_match_the_papers(name):
    paper = model_spec(name).paper_params_m
    params = count_parameters(create_model(name)) / 1e6
    # The papers print 2-3 significant digits; preact-1001's 10.2M is within 2% of ours (10.33M).
    decimals = len(str(paper).split(".")[1])
    assert round(params, decimals) == paper or abs(params - paper) / paper < 0.02, (params, paper)


def test_exact_counts_of_the_cifar_resnets():
    expected = {
        "resnet20": 269_722,
        "resnet32": 464_154,
        "resnet44": 658_586,
        "resnet56": 853_018,
        "resnet110": 1_727_962,
        "resnet1202": 19_421_274,
        "resnet18": 11_173_962,
    }
    for name, count in expected.items():
        assert count_parameters(create_model(name)) == count, name


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_plain_twin_has_the_same_parameters_as_option_a(depth):
    resnet = create_model(f"resnet{depth}")
    plain = create_model(f"plain{depth}")
    assert count_parameters(plain) == count_parameters(resnet)
    assert count_parameters(create_model(f"resnet{depth}", shortcut="B")) > count_parameters(resnet)
    assert not any(isinstance(m, ZeroPadShortcut) for m in plain.modules())


def test_option_a_shortcut_subsamples_and_zero_pads():
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    y = shortcut(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    assert list(shortcut.parameters()) == []


def test_models_pickle_and_have_no_lambdas():
    model = create_model("resnet20")
    clone = pickle.loads(pickle.dumps(model))
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    clone.eval()
    assert torch.equal(model(x), clone(x))


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "resnet50", "preact_resnet20", "preact_resnet164"])
def test_zero_init_residual_makes_blocks_identity(name):
    model = create_model(name, zero_init_residual=True).eval()
    block = model.blocks()[1]  # second block of the first stage: identity shortcut
    x = torch.relu(torch.randn(2, block.conv1.in_channels, 8, 8))  # non-negative, as after a ReLU
    assert torch.allclose(block(x), x, atol=1e-6)


def test_norm_none_builds_without_batch_norm():
    for name in ["resnet20", "plain20", "preact_resnet20", "resnet18"]:
        model = create_model(name, norm="none")
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


def test_uniform_interface():
    model = create_model("resnet56")
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, 64, 8, 8)
    assert model.forward_head(features, pre_logits=True).shape == (2, 64)
    model.reset_classifier(100)
    assert model(x).shape == (2, 100)
    assert len(model.blocks()) == 27


def test_macs_of_a_known_layer_and_of_resnet20():
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 32 * 32, 10))
    assert count_macs(conv) == 32 * 32 * 8 * 3 * 9 + 8 * 32 * 32 * 10
    # ResNet-20 is usually quoted at ~41M multiply-adds.
    assert 40e6 < count_macs(create_model("resnet20")) < 41e6


def test_bad_depths_are_rejected():
    from resnet_cifar.models.resnet import cifar_resnet, resnet_with_cifar_stem

    with pytest.raises(ValueError):
        cifar_resnet(21)
    with pytest.raises(ValueError):
        resnet_with_cifar_stem(19)


def test_global_max_pool_matches_adaptive_max_pool_in_values_and_gradients():
    """fastnet's amax pool (deterministic on CUDA) computes what nn.AdaptiveMaxPool2d(1) did, forward and backward
    (no ties in random data), so `--deterministic` works on a GPU without changing results."""
    from resnet_cifar.models.layers import GlobalMaxPool

    x = torch.randn(4, 8, 5, 5, generator=torch.Generator().manual_seed(0))
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    weights = torch.randn(4, 8, 1, 1)
    out_a, out_b = GlobalMaxPool()(a), torch.nn.AdaptiveMaxPool2d(1)(b)
    assert torch.equal(out_a, out_b)
    (out_a * weights).sum().backward()
    (out_b * weights).sum().backward()
    assert torch.equal(a.grad, b.grad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fastnet_trains_under_deterministic_algorithms_on_cuda():
    from resnet_cifar.runtime import enable_determinism

    enable_determinism(torch.device("cuda"))
    try:
        model = create_model("fastnet", widths=[16, 32, 64], stem_width=16).cuda()
        x = torch.randn(8, 3, 32, 32, device="cuda")
        torch.nn.functional.cross_entropy(model(x), torch.arange(8, device="cuda")).backward()
    finally:
        torch.use_deterministic_algorithms(False)


def test_whitening_stem_decorrelates_real_patches_and_can_freeze_its_bias(cifar_train):
    from resnet_cifar.data.augment import normalize

    images = normalize(cifar_train.images[:2000])
    net = create_model("fastnet", widths=[16, 32, 64], stem="whiten", train_stem_bias=False)
    net.stem.whiten_(images)
    half = net.stem.conv.out_channels // 2
    with torch.no_grad():
        responses = net.stem.conv(images)[:, :half].permute(0, 2, 3, 1).reshape(-1, half).double()
    covariance = torch.cov(responses.T)
    # decorrelated with unit variance (the eps of whiten_ shrinks the smallest eigen-directions a little)
    assert (covariance - torch.diag(covariance.diagonal())).abs().max() < 1e-4
    assert covariance.diagonal().min() > 0.5 and covariance.diagonal().max() < 1.01
    # frozen bias: nothing before the first 3x3 convolution learns, so its input needs no gradient
    x = images[:8].requires_grad_(False)
    assert not net.stem(x).requires_grad
    net(x).sum().backward()
    assert net.stem.conv.bias.grad is None and net.stem.conv.weight.grad is None
    assert net.stages[0][0][0].weight.grad is not None
    trained = create_model("fastnet", widths=[16, 32, 64], stem="whiten")
    trained.stem.whiten_(images)
    trained(x).sum().backward()
    assert trained.stem.conv.bias.grad is not None and trained.stem.conv.weight.grad is None
    with pytest.raises(ValueError, match="whitening stem"):
        create_model("fastnet", train_stem_bias=False)


def test_airbench_options_fixed_bn_scale_momentum_and_identity_init():
    net = create_model("fastnet", widths=[16, 32, 32], bn_scale=False, bn_momentum=0.4, dirac_init=True)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.4 and not m.weight.requires_grad for m in norms)
    assert all(m.bias.requires_grad for m in norms)
    # Dirac init: a convolution with as many inputs as outputs starts as the identity on every channel
    conv = net.stages[1][1].branch[0][0]  # the residual block's 32 -> 32 convolution
    x = torch.randn(2, 32, 8, 8)
    assert torch.allclose(conv(x), x, atol=1e-6)
    widening = net.stages[1][0][0]  # 16 -> 32: its first 16 filters pass the input through, the rest stay random
    y = widening(torch.randn(2, 16, 8, 8))
    assert y.shape[1] == 32 and not torch.allclose(y[:, 16:], torch.zeros_like(y[:, 16:]))
    x16 = torch.randn(2, 16, 8, 8)
    assert torch.allclose(widening(x16)[:, :16], x16, atol=1e-6)
    net(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(m.weight.grad is None for m in norms)
    with pytest.raises(ValueError, match="bn_scale"):
        create_model("fastnet", bn_scale=False, zero_init_residual=True)
    with pytest.raises(ValueError, match="bn_momentum"):
        create_model("fastnet", bn_momentum=0.0)


def test_gated_residual_blocks_start_as_the_identity_and_post_activation_sums_first():
    from resnet_cifar.models.fastnet import ResidualBlock

    x = torch.randn(4, 8, 6, 6)
    gated = ResidualBlock(8, norm="bn", act="gelu", convs=1, gate=True)
    assert gated.gate.item() == 0 and torch.equal(gated(x), x)
    gated(x).sum().backward()
    assert gated.gate.grad is not None and gated.gate.grad.abs() > 0  # the branch can come in
    post = ResidualBlock(8, norm="bn", act="gelu", convs=1, post_act=True)
    conv, bn = post.branch[0][0], post.branch[0][1]
    assert torch.allclose(post(x), torch.nn.functional.gelu(x + bn(conv(x))))
    net = create_model("fastnet", widths=[16, 32, 32], residual_gate=True, post_act=True)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="need residual=True"):
        create_model("fastnet", residual_gate=True, residual=False)
