"""CIFAR-style VGG-16 with BatchNorm (``vgg16_bn``).

The 13 conv layers of VGG config D, each conv-BN-ReLU, with the usual five 2x2 max-pools, then
global average pooling and a single Linear classifier (the CIFAR variant drops the 4096-wide
FC layers, which would dominate the parameter count at 32 px). The pools use
``ceil_mode=True`` so odd sizes round up (28 -> 14 -> 7 -> 4 -> 2 -> 1) instead of shrinking
to zero, and the adaptive pool makes the head independent of the input size.
"""

from __future__ import annotations

from torch import Tensor, nn

from .common import MODELS, init_weights_, scaled

# VGG config D: channel counts, "M" = max-pool.
CFG_D: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    """``features`` (conv-BN-ReLU / max-pool) -> global average pool -> ``classifier`` Linear."""

    def __init__(self, cfg: list[int | str], num_classes: int, in_channels: int = 3, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            cout = scaled(int(v), width)
            # No conv bias: the following BN has its own shift, so a bias would be redundant.
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        init_weights_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@MODELS.register("vgg16_bn")
def vgg16_bn(num_classes: int, in_channels: int = 3, width: float = 1.0) -> nn.Module:
    """VGG-16-BN, CIFAR variant: 13 conv layers (64..512 times ``width``) and one Linear."""
    return VGG(CFG_D, num_classes, in_channels, width)
