"""Per-channel weight statistics of each dependency group: the hypernetwork's view of the network.

For every output channel of a group: filter L1 norm, L2 norm, mean and std (averaged over the group's
coupled writer layers) and the following norm layer's gamma and beta; standardised within the group so
that groups of any width and scale look alike. Per group, three descriptors: log width, relative depth and
the group's share of the dense MACs. The paper says only "weight statistics"; these are our choice.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ...structure import PruningSpace

CHANNEL_STATS = ("l1", "l2", "mean", "std", "gamma", "beta")


@torch.no_grad()
def channel_statistics(space: PruningSpace, model: nn.Module | None = None) -> list[torch.Tensor]:
    mods = dict((model or space.model).named_modules())
    out = []
    for g in space.groups:
        rows = []
        for w in g.writers:
            W = mods[w].weight.detach().float().reshape(mods[w].weight.shape[0], -1)
            rows.append(torch.stack([W.abs().sum(1), W.norm(dim=1), W.mean(1), W.std(1, unbiased=False)], 1))
        filt = torch.stack(rows).mean(0)
        if g.norms:
            gam = torch.stack([mods[n].weight.detach().float() for n in g.norms if mods[n].weight is not None]).mean(0)
            bet = torch.stack([mods[n].bias.detach().float() for n in g.norms if mods[n].bias is not None]).mean(0)
        else:
            gam = torch.ones(g.size)
            bet = torch.zeros(g.size)
        s = torch.cat([filt.cpu(), gam.cpu()[:, None], bet.cpu()[:, None]], 1)
        s = (s - s.mean(0)) / (s.std(0, unbiased=False) + 1e-6)
        out.append(s)
    return out


def group_descriptors(space: PruningSpace) -> torch.Tensor:
    n = len(space.groups)
    share = torch.tensor(space.macs_share(), dtype=torch.float32)
    rows = [[math.log2(g.size) / 10.0, g.order / max(n - 1, 1), float(share[i])] for i, g in enumerate(space.groups)]
    return torch.tensor(rows, dtype=torch.float32)
