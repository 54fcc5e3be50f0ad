"""Class-activation maps (Grad-CAM, Selvaraju et al. 2017) with Captum's LayerGradCam, at the last stage or a named
layer: feature maps weighted by the pooled gradient of the class score, negative evidence clipped, upsampled to
32x32 and scaled to [0, 1] per image; computed in fp32 with gradients on, whatever the caller's context."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from resnet_cifar.data.normalization import CIFAR10, Normalization, normalize
from resnet_cifar.errors import ConfigError
from resnet_cifar.inference.tta import model_device, predict_logits
from resnet_cifar.runtime import Runtime


@dataclass
class Explanation:
    probabilities: torch.Tensor  # N x classes, calibrated (softmax of logits / temperature)
    classes: torch.Tensor  # N x K class indices, most likely first
    maps: torch.Tensor  # N x K x H x W in [0, 1], one map per explained class
    layer: str


def default_layer(model: nn.Module) -> str:
    """The last residual stage: `stages.<last>`."""
    stages = getattr(model, "stages", None)
    if not isinstance(stages, nn.Sequential) or len(stages) == 0:
        raise ConfigError(f"{type(model).__name__} has no `stages`: name the layer to explain (--cam-layer)")
    return f"stages.{len(stages) - 1}"


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` (as in `model.named_modules()`) if it gives feature maps (N x C x H x W) that a
    class-activation map can be taken at; else one line listing the stages there are."""
    modules = dict(model.named_modules())
    stages = [n for n in modules if n.count(".") <= 1 and n.startswith("stages")]
    if name not in modules or name == "":
        raise ConfigError(f"no layer {name!r} in this model; its stages are {', '.join(stages) or 'none'}")
    dims, was_training = set(), model.training
    hook = modules[name].register_forward_hook(lambda module, inputs, output: dims.add(getattr(output, "ndim", 0)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 32, 32, device=model_device(model)))
    finally:
        hook.remove()
        model.train(was_training)
    if dims != {4}:
        raise ConfigError(f"layer {name!r} gives no feature maps to draw (class-activation maps are taken at the "
                          f"stages: {', '.join(stages) or 'none'})")  # fmt: skip
    return modules[name]


def explain(
    model: nn.Module, images: torch.Tensor, *, top: int = 2, layer: str | None = None,
    normalization: Normalization = CIFAR10, temperature: float = 1.0, tta: int = 0, runtime: Runtime | None = None,
    batch_size: int = 64,
) -> Explanation:
    """The probabilities (at TTA level `tta`, in `runtime`'s precision, calibrated by `temperature`: what `predict`
    prints) of uint8 images N x 3 x H x W, and the class-activation maps of their `top` most likely classes (of the
    image as it is, in fp32)."""
    from captum.attr import LayerAttribution, LayerGradCam

    name = layer or default_layer(model)
    cam = LayerGradCam(model, find_layer(model, name))
    logits = predict_logits(model, images, tta=tta, runtime=runtime, normalization=normalization)
    probabilities = (logits / temperature).softmax(dim=1)
    classes = probabilities.topk(min(top, probabilities.shape[1]), dim=1).indices
    device = model_device(model)
    was_training = model.training
    model.eval()
    maps = []
    try:
        with torch.inference_mode(False), torch.enable_grad():
            for start in range(0, len(images), batch_size):
                batch = normalize(images[start : start + batch_size], normalization=normalization).to(device)
                chosen = classes[start : start + batch_size].clone().to(device)  # a normal tensor, not an inference one
                per_class = []
                for k in range(chosen.shape[1]):
                    raw = cam.attribute(batch, target=chosen[:, k], relu_attributions=True)
                    upsampled = LayerAttribution.interpolate(raw.detach(), tuple(batch.shape[-2:]), "bilinear")
                    per_class.append(_unit_scale(upsampled[:, 0].float()))
                maps.append(torch.stack(per_class, dim=1).cpu())
    finally:
        model.train(was_training)
    return Explanation(probabilities, classes, torch.cat(maps) if maps else torch.empty(0, top, 32, 32), name)


def explain_loaded(loaded, images: torch.Tensor, *, tta: int, layer: str | None = None, top: int = 2) -> Explanation:
    """`explain` with the normalisation, temperature and runtime a LoadedModel carries (what predict uses)."""
    return explain(
        loaded.model, images, top=top, layer=layer, normalization=loaded.normalization, temperature=loaded.temperature,
        tta=tta, runtime=loaded.runtime,
    )


def _unit_scale(maps: torch.Tensor) -> torch.Tensor:
    """Each N x H x W map divided by its maximum (all-zero maps stay zero): comparable colours across images."""
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (maps.clamp_min(0) / peak).clamp(0, 1)
