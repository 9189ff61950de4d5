"""g_w: turns the prompt V into the LSTM's initial state (h0, c0), as the paper states.

Our choice of form: a two-layer strided CNN over the masked prompt, global average pooling and a linear
layer. For the no-prompt ablation, ``ConstantState`` replaces it: (h0, c0) become learned vectors, so the
prompt's information path is removed while the hypernetwork keeps its capacity.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class PromptEncoder(nn.Module):
    def __init__(self, in_channels: int, hidden: int, width: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, 2 * hidden),
        )
        self.hidden = hidden

    def forward(self, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = self.net(prompt.unsqueeze(0)).chunk(2, dim=1)
        return torch.tanh(h), c


class ConstantState(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.h0 = nn.Parameter(torch.zeros(1, hidden))
        self.c0 = nn.Parameter(torch.zeros(1, hidden))
        self.hidden = hidden

    def forward(self, _prompt: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.tanh(self.h0), self.c0
