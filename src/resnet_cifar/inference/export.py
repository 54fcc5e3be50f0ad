"""Export to ONNX or TorchScript with the weights' normalisation inside: the graph takes float32 RGB in [0, 1],
N x 3 x 32 x 32 (any N), and returns logits N x 10; its metadata carries the temperature, the class names and the
normalisation."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from resnet_cifar.data.cifar10 import CLASSES
from resnet_cifar.data.normalization import CIFAR10, Normalization
from resnet_cifar.errors import ConfigError, ResnetCifarError
from resnet_cifar.files import check_output
from resnet_cifar.inference.tta import model_device
from resnet_cifar.run_folder import OUTPUT_DIR

FORMATS = ("onnx", "torchscript")


def opset_range() -> tuple[int, int]:
    """The ONNX opsets this PyTorch's TorchScript-based exporter writes (7 to 20 in PyTorch 2.13)."""
    try:
        from torch.onnx import _constants

        return _constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    except (ImportError, AttributeError):  # a private module: keep a range known to work if it moves
        return 7, 17


def output_path(output: str | Path | None, name: str, fmt: str) -> Path:
    """`--output`: a file, or a folder to put `<model>.onnx` / `.pt` in; default outputs/<model>.<ext>."""
    filename = f"{name}{'.onnx' if fmt == 'onnx' else '.pt'}"
    if output is None:
        return Path(OUTPUT_DIR) / filename
    output = Path(output)
    return output / filename if output.is_dir() or str(output).endswith(("/", os.sep)) else output


class Deployable(nn.Module):
    """model(normalise(x)) for x in [0, 1], with the weights' own normalisation."""

    def __init__(self, model: nn.Module, normalization: Normalization = CIFAR10):
        super().__init__()
        self.model = model.eval()
        self.register_buffer("mean", torch.tensor(normalization.mean).view(1, 3, 1, 1))
        self.register_buffer("inv_std", 1 / torch.tensor(normalization.std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) * self.inv_std)


def export_model(
    model: nn.Module, fmt: str, path: Path, opset: int = 17, metadata: dict[str, str] | None = None,
    normalization: Normalization = CIFAR10,
) -> Path:
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    low, high = opset_range()
    if fmt == "onnx" and not low <= opset <= high:
        raise ConfigError(f"--opset: this PyTorch exports ONNX opsets {low} to {high}, got {opset}")
    device = model_device(model)  # traced where the model is (default CPU: a file that runs anywhere)
    wrapped = Deployable(model, normalization).to(device).eval()
    example = torch.rand(2, 3, 32, 32, device=device)
    partial = check_output(path.with_name(path.name + ".part"), force=True)  # written whole, then renamed
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.touch()
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        _export(wrapped, example, fmt, partial, opset, metadata or {})
    except Exception as error:  # the exporter's own failure (an operator it cannot write at this opset, ...)
        partial.unlink(missing_ok=True)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ResnetCifarError(f"{fmt} export failed: {first}") from None
    os.replace(partial, path)
    return path


def export_metadata(temperature: float, normalization: Normalization = CIFAR10) -> dict[str, str]:
    """What an exported file says about its inputs and outputs (strings: both formats store text)."""
    return {
        "temperature": repr(float(temperature)), "classes": json.dumps(list(CLASSES)), "output": "logits",
        "input": "float32 RGB in [0, 1], N x 3 x 32 x 32; normalised inside the graph",
        "normalization": json.dumps(normalization.as_dict()),
    }


def _export(
    wrapped: nn.Module, example: torch.Tensor, fmt: str, path: Path, opset: int, metadata: dict[str, str]
) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter about deprecations; the parity test is the check
        if fmt == "onnx":
            torch.onnx.export(
                wrapped, (example,), str(path), input_names=["images"], output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False,
            )
            if metadata:
                import onnx

                graph = onnx.load(str(path))
                for key, value in metadata.items():
                    graph.metadata_props.add(key=key, value=value)
                onnx.save(graph, str(path))
        else:
            traced = torch.jit.trace(wrapped, example)
            traced.save(str(path), _extra_files={"metadata.json": json.dumps(metadata)})
