"""torchvision MobileNetV2 (``mobilenet_v2``) with an ``in_channels`` stem and a small-input mode.

``small_input=True`` (the default; build_model cannot know the image size, so callers pass it
through ``build_model(..., small_input=...)``) makes the stem conv and the first stride-2 stage
(the 24-channel one) stride 1, as common CIFAR variants do: otherwise a 32 px image is 1 px wide
after the fourth downsampling and a 28 px one even earlier. The layers keep torchvision's names,
so ImageNet weights load either way (strides hold no parameters).
"""

from __future__ import annotations

import copy

from torch import nn
from torchvision.models import MobileNetV2

# torchvision's default inverted-residual setting: expansion t, channels c, repeats n, stride s.
_SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def mobilenet_v2(num_classes: int, in_channels: int = 3, width: float = 1.0, small_input: bool = True) -> nn.Module:
    """MobileNetV2 with ``width_mult=width``; the classifier is ``classifier[1]`` (after dropout)."""
    setting = copy.deepcopy(_SETTING)
    if small_input:
        setting[1][3] = 1
    model = MobileNetV2(num_classes=num_classes, width_mult=width, inverted_residual_setting=setting)
    if in_channels != 3 or small_input:
        old = model.features[0][0]
        stem = nn.Conv2d(in_channels, old.out_channels, 3, stride=1 if small_input else 2, padding=1, bias=False)
        nn.init.kaiming_normal_(stem.weight, mode="fan_out")
        model.features[0][0] = stem
    return model
