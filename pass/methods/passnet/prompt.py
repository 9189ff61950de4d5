"""The visual prompt V: a learnable pad (border) added to the normalised input.

Why a pad prompt: the paper does not say; the same group's VPNs code uses a pad prompt of 16 px at 224 px,
so we take that and scale the width with resolution (at least 1 px): 2 px at 28 px.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def pad_width(image_size: int, width_at_224: int = 16) -> int:
    return max(1, round(width_at_224 * image_size / 224))


class PadPrompt(nn.Module):
    def __init__(self, in_channels: int, image_size: int, width: int) -> None:
        super().__init__()
        if not 1 <= width < image_size // 2:
            raise ValueError(f"prompt width {width} does not fit a {image_size}px image")
        self.delta = nn.Parameter(torch.zeros(in_channels, image_size, image_size))
        mask = torch.ones(1, image_size, image_size)
        mask[:, width:-width, width:-width] = 0.0
        self.register_buffer("mask", mask)

    def masked(self) -> torch.Tensor:
        """V restricted to the border: what the prompt encoder reads."""
        return self.delta * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != self.delta.shape[-2:]:
            raise ValueError(f"prompt is {tuple(self.delta.shape[-2:])} but the input is {tuple(x.shape[-2:])}")
        return x + self.masked().unsqueeze(0)

    @property
    def num_trainable(self) -> int:
        return int(self.mask.sum().item()) * self.delta.shape[0]
