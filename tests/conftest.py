"""Shared fixtures: small real data (Fashion-MNIST subsets) and small registry models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def fmnist_small(tmp_path_factory):
    """A few hundred real Fashion-MNIST images (the Debian package, unpacked once per session)."""
    from passprune.data import load_dataset

    root = tmp_path_factory.mktemp("data")
    return load_dataset("fashion_mnist", root, seed=0, val_size=200, train_subset=512, test_subset=200)


def small_model(arch: str, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """A narrow registry model with randomised BatchNorm statistics, so masking bugs cannot hide behind
    identity-like normalisation."""
    from passprune.models import build_model

    width = 1.0 if arch in ("resnet20", "resnet56") else 0.25
    torch.manual_seed(0)
    model = build_model(arch, num_classes=num_classes, in_channels=in_channels, width=width)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()
