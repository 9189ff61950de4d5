"""Model registry: every architecture the pipeline can prune, built by name.

Contract shared by all registered factories (the pruning code relies on it):

* signature ``factory(num_classes, in_channels=3, width=1.0, **kwargs) -> nn.Module``;
* every conv is followed by BatchNorm (the importance criteria read BN scales);
* the classifier is the *only* ``nn.Linear`` and therefore the last one in ``model.modules()``
  order -- pruning finds it that way and never prunes its outputs (the class count).

Importing this package imports the family modules so that they register themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from .common import MODELS, init_weights_, scaled  # noqa: F401  (re-exported: the registry's home)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a glob pattern, sorted."""
    return MODELS.names(pattern)


def get_classifier(model: nn.Module) -> nn.Linear:
    """The classifier, i.e. the last ``nn.Linear`` in module order (see the module contract)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return linears[-1]


def build_model(
    name: str,
    num_classes: int,
    in_channels: int = 3,
    width: float = 1.0,
    pretrained: bool = False,
    weights_dir: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``kwargs`` go to the family factory unchanged (e.g. ``small_input`` for ``mobilenet_v2``);
    a factory that does not know a kwarg raises ``TypeError``, so typos do not pass silently.
    ``pretrained`` loads torchvision ImageNet weights (new head; stem adapted to ``in_channels``);
    it is only offered for the torchvision architectures and only at ``width == 1.0``, because
    the checkpoints exist only for those shapes.
    """
    factory = MODELS.get(name)
    if num_classes < 1 or in_channels < 1 or width <= 0:
        raise ValueError(
            f"bad model shape for {name!r}: num_classes={num_classes}, in_channels={in_channels}, width={width}"
        )
    if pretrained:
        if name not in IMAGENET_ARCHS:
            raise ValueError(
                f"pretrained=True is not available for {name!r}: ImageNet weights exist only for "
                f"{', '.join(sorted(IMAGENET_ARCHS))}"
            )
        if width != 1.0:
            raise ValueError(
                f"pretrained=True needs width=1.0 for {name!r} (got width={width}): "
                "the ImageNet checkpoints exist only at full width"
            )
    model = factory(num_classes=num_classes, in_channels=in_channels, width=width, **kwargs)
    if pretrained:
        from .imagenet import load_imagenet_weights

        load_imagenet_weights(model, name, in_channels=in_channels, weights_dir=weights_dir)
    return model


#: Architectures with torchvision ImageNet weights (= the keys of ``IMAGENET_WEIGHTS``; tests/test_models.py
#: checks that), known without importing torchvision.
IMAGENET_ARCHS = ("mobilenet_v2", "resnet18", "resnet34", "resnet50")
#: The torchvision-based architectures and their modules. Those modules import ``torchvision.models`` (its ops
#: and torch._dynamo: about 3.7 s of CPU per process, measured in bench/README.md), so they are imported on
#: first build: every job on a CIFAR-style network starts that much sooner.
_LAZY = {"resnet18": "imagenet", "resnet34": "imagenet", "resnet50": "imagenet", "mobilenet_v2": "mobilenet"}


def _lazy_factory(name: str, module: str) -> Callable[..., nn.Module]:
    def factory(**kwargs: Any) -> nn.Module:
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)(**kwargs)

    factory.__name__ = name
    factory.__doc__ = f"``{name}`` from passprune.models.{module} (imported on first build)"
    return factory


for _name, _module in _LAZY.items():
    MODELS.register(_name)(_lazy_factory(_name, _module))


def __getattr__(attr: str) -> Any:
    """``IMAGENET_WEIGHTS`` / ``load_imagenet_weights`` import torchvision only when someone asks for them."""
    if attr in ("IMAGENET_WEIGHTS", "load_imagenet_weights"):
        from . import imagenet

        return getattr(imagenet, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


# Family modules register into MODELS on import, so they must come after its definition.
from . import cifar_resnet, vgg  # noqa: E402,F401

__all__ = ["MODELS", "build_model", "get_classifier", "list_models", "scaled", "IMAGENET_ARCHS", "IMAGENET_WEIGHTS"]
