"""torch.hub entry points: the paper's CIFAR-10 ResNets (He et al. 2015, Table 6), offline from a clone.

    model = torch.hub.load("path/to/resnet-cifar", "resnet56", source="local", pretrained=True)
    probabilities = model.probabilities(images)      # images: float N x 3 x 32 x 32 scaled to [0, 1]

`pretrained=True` gives the weights shipped in the package with their input normalisation inside the module and
their validation-fitted temperature (`model.temperature`, `model.card` is the model card); nothing is downloaded.
`pretrained=False` gives the bare network, freshly initialised, expecting normalised input as any trained from
scratch by `resnet-cifar train`.
"""

import sys
from pathlib import Path

dependencies = ["torch", "safetensors"]

_SOURCE = Path(__file__).resolve().parent / "src"
if str(_SOURCE) not in sys.path:  # a plain clone: the package is importable without installing it
    sys.path.insert(0, str(_SOURCE))


def _paper_resnet(name: str, pretrained: bool, **options):
    from resnet_cifar.inference.loading import Pretrained, load_pretrained
    from resnet_cifar.models import create_model

    if pretrained:
        return Pretrained(load_pretrained(name, device="cpu"))  # a plain module: move it with .to(...)
    return create_model(name, **options)


def resnet20(pretrained: bool = False, **options):
    """ResNet-20 (0.27M parameters)."""
    return _paper_resnet("resnet20", pretrained, **options)


def resnet32(pretrained: bool = False, **options):
    """ResNet-32 (0.46M parameters)."""
    return _paper_resnet("resnet32", pretrained, **options)


def resnet44(pretrained: bool = False, **options):
    """ResNet-44 (0.66M parameters)."""
    return _paper_resnet("resnet44", pretrained, **options)


def resnet56(pretrained: bool = False, **options):
    """ResNet-56 (0.85M parameters)."""
    return _paper_resnet("resnet56", pretrained, **options)


def resnet110(pretrained: bool = False, **options):
    """ResNet-110 (1.7M parameters)."""
    return _paper_resnet("resnet110", pretrained, **options)
