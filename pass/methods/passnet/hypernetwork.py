"""The recurrent hypernetwork: an LSTM that steps over the dependency groups in forward order.

Step i reads an embedding e_i of group i's weight statistics; its hidden state h_i is mapped to one score
per channel by (a) a per-group linear mapper U_i h_i + b_i (the paper's "linear mapper") plus (b) a
bilinear term <W_q h_i, phi(stats_ij)> that lets the state decide which statistics matter in this layer
while keeping the scores tied to channel identity. (h0, c0) come from the prompt encoder.

Ablation switches: ``recurrent=False`` replaces the LSTM by a per-step MLP that sees e_i and the initial
state but carries nothing between groups; ``use_stats=False`` replaces the statistics by learned per-group
embeddings (and drops the bilinear term, which needs them).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class RecurrentHyperNetwork(nn.Module):
    def __init__(self, group_sizes: list[int], stat_dim: int, desc_dim: int, hidden: int = 64, embed: int = 64,
                 recurrent: bool = True, use_stats: bool = True) -> None:
        super().__init__()
        self.recurrent, self.use_stats, self.hidden = recurrent, use_stats, hidden
        if use_stats:
            self.phi = nn.Sequential(nn.Linear(stat_dim, embed), nn.ReLU(), nn.Linear(embed, embed))
            self.step_in = nn.Sequential(nn.Linear(2 * embed + desc_dim, embed), nn.ReLU())
            self.query = nn.Linear(hidden, embed, bias=False)
        else:
            self.group_embed = nn.Parameter(torch.randn(len(group_sizes), embed) * 0.1)
        if recurrent:
            self.cell = nn.LSTMCell(embed, hidden)
        else:
            self.step_mlp = nn.Sequential(nn.Linear(embed + hidden, hidden), nn.Tanh(), nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)
        self.mappers = nn.ModuleList(nn.Linear(hidden, c) for c in group_sizes)
        for m in self.mappers:
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        self.embed = embed

    def forward(self, stats: list[torch.Tensor], desc: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        """Per-group channel scores (unbounded logits)."""
        h, c = state
        h0 = h
        scores = []
        for i, mapper in enumerate(self.mappers):
            if self.use_stats:
                z = self.phi(stats[i])  # (C_i, E)
                e = self.step_in(torch.cat([z.mean(0), z.amax(0), desc[i]])[None])
            else:
                e = self.group_embed[i][None]
            if self.recurrent:
                h, c = self.cell(e, (h, c))
                out = h
            else:
                out = self.step_mlp(torch.cat([e, h0], 1))
            out = torch.relu(self.norm(out))
            s = mapper(out)[0]
            if self.use_stats:
                s = s + z @ self.query(out)[0] / self.embed ** 0.5
            scores.append(s)
        return scores
