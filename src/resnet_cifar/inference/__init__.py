"""Using trained weights: loading a run, a weights file or shipped weights by name, predicting image files,
exporting."""

from resnet_cifar.inference.loading import (
    LoadedModel,
    Pretrained,
    load_model,
    load_pretrained,
    resolve_weights,
    shipped_weights,
)

__all__ = ["LoadedModel", "Pretrained", "load_model", "load_pretrained", "resolve_weights", "shipped_weights"]
