"""Using trained weights: loading a run or a weights file, predicting image files, exporting."""

from resnet_cifar.inference.loading import LoadedModel, load_model, resolve_weights

__all__ = ["LoadedModel", "load_model", "resolve_weights"]
