"""The recurrent hypernetwork: an LSTM that steps over the dependency groups in forward order.

Step i reads an embedding e_i of group i's weight statistics; its hidden state h_i is mapped to one score
per channel by a per-group linear mapper U_i h_i + b_i, the paper's "linear mapper". (h0, c0) come from the
prompt encoder.

Switches, each off by default except where the paper states the component:

* ``bilinear`` [ours]: adds <W_q h_i, phi(stats_ij)>/sqrt(E) to the scores, which ties each channel's score
  to its own statistics. Not in the paper; without it the statistics still enter through the LSTM input
  (pooled), and per-channel identity lives in the mapper rows, as the paper describes.
* ``autoregressive`` [ours, docs/paper.md Q5]: the previous group's soft keep ratio (mean sigmoid probability,
  differentiable) is appended to the next step's input, so step i sees the decision of step i-1 as the
  ICLR reviewers describe the hypernetwork ("considering the sparse masks from previous layers").
* ``recurrent=False`` (ablation): a per-step MLP that sees e_i and the initial state, nothing carried between
  groups. It excludes ``autoregressive``, which is itself a carried state.
* ``use_stats=False`` (ablation): learned per-group embeddings replace the statistics (excludes ``bilinear``,
  which needs them).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class RecurrentHyperNetwork(nn.Module):
    def __init__(
        self,
        group_sizes: list[int],
        stat_dim: int,
        desc_dim: int,
        hidden: int = 64,
        embed: int = 64,
        recurrent: bool = True,
        use_stats: bool = True,
        bilinear: bool = False,
        autoregressive: bool = False,
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if bilinear and not use_stats:
            raise ValueError(
                "bilinear scores read the per-channel statistics; they cannot be used without them "
                "(pass_nostats): set bilinear: false"
            )
        if autoregressive and not recurrent:
            raise ValueError(
                "autoregressive feeds each group's decision to the next step, which is a recurrence; "
                "the no-recurrence ablation (pass_norecur) excludes it: set autoregressive: false"
            )
        self.recurrent, self.use_stats, self.hidden = recurrent, use_stats, hidden
        self.bilinear, self.autoregressive, self.temperature = bilinear, autoregressive, float(temperature)
        if use_stats:
            self.phi = nn.Sequential(nn.Linear(stat_dim, embed), nn.ReLU(), nn.Linear(embed, embed))
            self.step_in = nn.Sequential(nn.Linear(2 * embed + desc_dim, embed), nn.ReLU())
            if bilinear:
                self.query = nn.Linear(hidden, embed, bias=False)
        else:
            self.group_embed = nn.Parameter(torch.randn(len(group_sizes), embed) * 0.1)
        step_dim = embed + (1 if autoregressive else 0)
        if recurrent:
            self.cell = nn.LSTMCell(step_dim, hidden)
        else:
            self.step_mlp = nn.Sequential(nn.Linear(step_dim + hidden, hidden), nn.Tanh(), nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)
        self.mappers = nn.ModuleList(nn.Linear(hidden, c) for c in group_sizes)
        for m in self.mappers:
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        self.embed = embed

    def forward(
        self, stats: list[torch.Tensor], desc: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> list[torch.Tensor]:
        """Per-group channel scores (unbounded logits, before the temperature)."""
        h, c = state
        h0 = h
        prev_keep = h.new_ones(1, 1)  # before the first group nothing is pruned
        scores = []
        for i, mapper in enumerate(self.mappers):
            if self.use_stats:
                z = self.phi(stats[i])  # (C_i, E)
                e = self.step_in(torch.cat([z.mean(0), z.amax(0), desc[i]])[None])
            else:
                e = self.group_embed[i][None]
            if self.autoregressive:
                e = torch.cat([e, prev_keep], 1)
            if self.recurrent:
                h, c = self.cell(e, (h, c))
                out = h
            else:
                out = self.step_mlp(torch.cat([e, h0], 1))
            out = torch.relu(self.norm(out))
            s = mapper(out)[0]
            if self.bilinear:
                s = s + z @ self.query(out)[0] / self.embed**0.5
            if self.autoregressive:
                prev_keep = torch.sigmoid(s / self.temperature).mean().view(1, 1)
            scores.append(s)
        return scores
