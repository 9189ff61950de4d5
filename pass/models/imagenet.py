"""torchvision ResNets (``resnet18``, ``resnet34``, ``resnet50``) and ImageNet weight loading.

Width multiplier: torchvision hard-codes the 64-128-256-512 stage widths, and its
``width_per_group`` only widens the inner 3x3 of Bottleneck blocks (BasicBlock rejects it), so
``ScaledResNet`` subclasses ``torchvision.models.ResNet`` and scales ``planes`` in
``_make_layer``, then rebuilds the stem / head where their shape changed. Subclassing rather
than reimplementing keeps torchvision's blocks, forward and state_dict key names, which is what
lets the ImageNet checkpoints load by name (at width 1.0).
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, ResNet, ResNet18_Weights, ResNet34_Weights, ResNet50_Weights
from torchvision.models._api import WeightsEnum
from torchvision.models.resnet import BasicBlock, Bottleneck

from .common import scaled

# Architecture name -> torchvision ImageNet weights (their names: passprune.models.IMAGENET_ARCHS).
IMAGENET_WEIGHTS: dict[str, WeightsEnum] = {
    "mobilenet_v2": MobileNet_V2_Weights.IMAGENET1K_V1,
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": ResNet50_Weights.IMAGENET1K_V1,
}


class ScaledResNet(ResNet):
    """torchvision ResNet whose stem and stage widths are multiplied by ``width`` and whose
    first conv takes ``in_channels``; identical to torchvision's at width 1, in_channels 3."""

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int,
        in_channels: int = 3,
        width: float = 1.0,
    ) -> None:
        self._width = width  # read by _make_layer, which runs inside ResNet.__init__
        super().__init__(block, layers, num_classes=num_classes)
        stem = scaled(64, width)
        if in_channels != 3 or width != 1.0:
            self.conv1 = nn.Conv2d(in_channels, stem, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        if width != 1.0:
            self.bn1 = nn.BatchNorm2d(stem)
            self.fc = nn.Linear(scaled(512, width) * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):  # type: ignore[override]
        if planes == 64:  # layer1: its input is the stem, which __init__ rebuilds at scaled(64)
            self.inplanes = scaled(64, self._width)
        return super()._make_layer(block, scaled(planes, self._width), blocks, stride, dilate)


def resnet18(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """torchvision ResNet-18 (ImageNet stem: 7x7 stride-2 conv + max-pool)."""
    return ScaledResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, width)


def resnet34(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """torchvision ResNet-34."""
    return ScaledResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, width)


def resnet50(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """torchvision ResNet-50 (Bottleneck blocks, stride on the 3x3 as in torchvision v1.5)."""
    return ScaledResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, width)


def weights_cache_path(arch: str, weights_dir: str | None = None) -> str:
    """Where ``torch.hub`` looks for (and would download) the ImageNet checkpoint of ``arch``."""
    url = IMAGENET_WEIGHTS[arch].url
    folder = weights_dir or os.path.join(torch.hub.get_dir(), "checkpoints")
    return os.path.join(folder, os.path.basename(urlparse(url).path))


def adapt_stem_weight(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB stem filters -> ``in_channels`` inputs: the channel mean, copied to every input and
    scaled by 3/in_channels, so an input whose channels are all equal gives the same response
    as the RGB filter on the equivalent gray image (the pretrained BN statistics stay valid)."""
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, 1, 1) * (weight.shape[1] / in_channels)


def load_imagenet_weights(model: nn.Module, arch: str, in_channels: int = 3, weights_dir: str | None = None) -> None:
    """Load torchvision's ImageNet checkpoint for ``arch`` into ``model`` in place.

    Everything is copied by name except the classifier (a new ``num_classes`` head keeps its
    fresh init) and, when ``in_channels != 3``, the stem conv, whose filters are adapted. Any
    other missing or mis-shaped tensor is an error: a silent partial load would look like a
    pretrained run but is not one.
    """
    from ..downloads import PREFETCH_HINT, downloads_allowed

    url = IMAGENET_WEIGHTS[arch].url
    path = weights_cache_path(arch, weights_dir)
    if not os.path.isfile(path) and not downloads_allowed():  # a job: fail now, never reach for the network
        raise RuntimeError(
            f"cannot load ImageNet weights for {arch!r}: {path} is missing. Fix: {PREFETCH_HINT}; or copy "
            f"{os.path.basename(path)} (from {url}) to {path} by hand."
        )
    try:
        state = torch.hub.load_state_dict_from_url(
            url, model_dir=weights_dir, map_location="cpu", progress=False, weights_only=True
        )
    except OSError as err:  # URLError, HTTPError, socket timeouts and refused connections
        raise RuntimeError(
            f"cannot load ImageNet weights for {arch!r}: {path} is not cached and downloading "
            f"{url} failed ({err}). Fix: run once with internet access so torch.hub caches it, "
            f"or copy {os.path.basename(path)} to {path}."
        ) from err

    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    head = linears[-1] + "."
    stem = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)) + ".weight"
    own = model.state_dict()
    loaded, problems = set(), []
    for key, value in state.items():
        if key.startswith(head):
            continue
        if key == stem and value.shape[1] != in_channels:
            value = adapt_stem_weight(value, in_channels)
        if key not in own or own[key].shape != value.shape:
            problems.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape) if key in own else 'absent'}")
            continue
        own[key] = value
        loaded.add(key)
    missing = [k for k in own if k not in loaded and not k.startswith(head) and not k.endswith("num_batches_tracked")]
    if problems or missing:
        raise RuntimeError(
            f"ImageNet checkpoint {path} does not fit {arch!r}: mismatched {problems[:5]}, missing {missing[:5]}"
        )
    model.load_state_dict(own)
