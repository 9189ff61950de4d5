"""One-shot importance baselines: random, and the Torch-Pruning-style ``*_tp`` criteria (L1 global and
layer-uniform, first-order Taylor, FPGM). The published methods under the plain names are in ``faithful.py``.

Scores come from Torch-Pruning's importance classes evaluated on our dependency groups (an importance is
a callable from a group to per-channel scores); selection under the MACs budget is the shared
``PruningSpace.select_global`` / ``select_uniform``. Torch-Pruning's default ``normalizer='mean'`` divides
each group's scores by their mean, which is what makes a *global* ranking across groups meaningful.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
import torch_pruning as tp

from ..memory import gpu_autocast
from . import SearchContext, SearchResult, baseline, cost


def group_scores(ctx: SearchContext, importance) -> dict[str, torch.Tensor]:
    return {g.id: importance(g.tp_group).detach().float().cpu() for g in ctx.space.groups}


@baseline("random", "uniformly random channel scores, global ranking")
def random_method(ctx: SearchContext) -> SearchResult:
    gen = torch.Generator().manual_seed(ctx.seed)
    scores = {g.id: torch.rand(g.size, generator=gen) for g in ctx.space.groups}
    return SearchResult(ctx.space.select_global(scores, ctx.target), cost())


def _one_shot(make_importance, uniform: bool):
    """A Torch-Pruning importance scored on every group, then one global ranking (or one ratio per group)."""

    def method(ctx: SearchContext) -> SearchResult:
        scores = group_scores(ctx, make_importance(ctx.options))
        select = ctx.space.select_uniform if uniform else ctx.space.select_global
        return SearchResult(select(scores, ctx.target), cost())

    return method


#: name -> (summary, importance from the options, one ratio per group?, option defaults)
_TP_ONE_SHOT = {
    "l1_tp": (
        "Torch-Pruning style: L1 norm summed over the coupled group, mean-normalised, global ranking",
        lambda o: tp.importance.GroupMagnitudeImportance(p=o["p"]),
        False,
        {"p": 1},
    ),
    "l1_uniform_tp": (
        "Torch-Pruning style: L1 norm summed over the coupled group, the same ratio in every group",
        lambda o: tp.importance.GroupMagnitudeImportance(p=o["p"]),
        True,
        {"p": 1},
    ),
    "fpgm_tp": (
        "Torch-Pruning style FPGM: geometric-median distance over the coupled group, global ranking",
        lambda o: tp.importance.FPGMImportance(p=o["p"]),
        False,
        {"p": 2},
    ),
}
for _name, (_summary, _make, _uniform, _defaults) in _TP_ONE_SHOT.items():
    baseline(_name, _summary, **_defaults)(_one_shot(_make, _uniform))


@baseline(
    "taylor_tp",
    "Torch-Pruning style Taylor: |w * dL/dw| of gradients summed over batches, global ranking",
    batches=8,
)
def taylor_method(ctx: SearchContext) -> SearchResult:
    model = ctx.model  # on ctx.device already (the device contract)
    model.eval()  # BN statistics stay those of the trained model; gradients still flow
    model.zero_grad(set_to_none=True)
    gen = torch.Generator().manual_seed(ctx.seed)
    t0, n, images = time.time(), 0, 0
    for i, (x, y) in enumerate(
        ctx.data.train.batches(ctx.batch_size, shuffle=True, augment=False, generator=gen, device=ctx.device)
    ):
        if i >= ctx.options["batches"]:
            break
        with gpu_autocast(ctx.device):  # bf16 on CUDA only (passprune.memory): CPU runs are unchanged
            out = model(x).float()
        F.cross_entropy(out, y).backward()  # gradients accumulate over batches
        n += 1
        images += y.numel()
    scores = group_scores(ctx, tp.importance.GroupTaylorImportance())
    model.zero_grad(set_to_none=True)
    return SearchResult(
        ctx.space.select_global(scores, ctx.target),
        info={"taylor_batches": n, "gradient_seconds": time.time() - t0, **cost(search_steps=n, search_images=images)},
    )
