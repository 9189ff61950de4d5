"""What every architecture family module shares: the registry it registers into and the CIFAR families'
width scaling and initialisation. Its own module so that the families import it, not the package that imports
them (no import circle)."""

from __future__ import annotations

from torch import nn

from ..registry import Registry

MODELS: Registry = Registry("model")


def scaled(channels: int, width: float) -> int:
    """Channel count times the width multiplier, at least 1 (so tiny widths still build)."""
    return max(1, int(round(channels * width)))


def init_weights_(model: nn.Module) -> None:
    """The He et al. initialisation the CIFAR families share: Kaiming-normal convs (fan-out, ReLU), BatchNorm
    at scale 1 and shift 0 (Linear layers keep PyTorch's default)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
