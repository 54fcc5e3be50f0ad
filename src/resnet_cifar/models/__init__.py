"""Pure `nn.Module` networks, built by name: `create_model("resnet56")`, `list_models()`."""

from resnet_cifar.models import fastnet as _fastnet  # noqa: F401  (registers the fast residual nets)
from resnet_cifar.models import resnet as _resnet  # noqa: F401  (registers the ResNet family)
from resnet_cifar.models.registry import ModelSpec, create_model, list_models, model_spec, register_model
from resnet_cifar.models.resnet import ResNet
from resnet_cifar.models.summary import count_macs, count_parameters, format_table, model_table

__all__ = [
    "ModelSpec", "ResNet", "count_macs", "count_parameters", "create_model", "format_table", "list_models",
    "model_spec", "model_table", "register_model",
]
