"""Export a trained model to ONNX or TorchScript, with the CIFAR-10 normalisation built in.

The exported graph takes float32 RGB images in [0, 1], shape N x 3 x 32 x 32 with any N (dynamic batch), and returns
logits N x 10 (apply softmax for probabilities), so a user elsewhere needs nothing but the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from resnet_cifar.data.augment import CIFAR10_MEAN, CIFAR10_STD
from resnet_cifar.evaluate.inference import model_device

FORMATS = ("onnx", "torchscript")


class Deployable(nn.Module):
    """model(normalise(x)) for x in [0, 1]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval()
        self.register_buffer("mean", torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1 / torch.tensor(CIFAR10_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) * self.inv_std)


def export_model(model: nn.Module, fmt: str, path: Path, opset: int = 17) -> Path:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    device = model_device(model)  # traced where the model is (default CPU: a file that runs anywhere)
    wrapped = Deployable(model).to(device).eval()
    example = torch.rand(2, 3, 32, 32, device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter about deprecations; the parity test is the check
        if fmt == "onnx":
            torch.onnx.export(
                wrapped,
                (example,),
                str(path),
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        else:
            traced = torch.jit.trace(wrapped, example)
            traced.save(str(path))
    return path
