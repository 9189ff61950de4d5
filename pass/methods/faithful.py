"""Faithful baselines: the published methods as their papers describe them, under the plain names.

The ``*_tp`` baselines (``importance.py``, ``sparsity.py``) are Torch-Pruning-style approximations: group
scores summed over every coupled layer, normalised per group and ranked globally. The methods here follow
their papers instead, each to the extent a MACs-matched comparison allows (every method must return a
structure within 1% of the MACs target; docs/method.md lists, per method, what it follows and where it
deviates):

* ``l1`` -- Li et al. 2017, "Pruning Filters for Efficient ConvNets": the L1 norm of each raw filter (the
  conv weights that write a channel; no BatchNorm, no next-layer slices), the same pruning ratio in every
  layer; ResNets' residual stream is left unpruned (``keep_coupled``), as the paper prunes only the first
  layer of each residual block.
* ``fpgm`` -- He et al. 2019, "Filter Pruning via Geometric Median": per layer, the filters closest to the
  geometric median of that layer's raw filters (smallest summed distance to the others) go first; the
  same ratio in every layer.
* ``taylor`` -- Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning": a gate after
  each channel's BatchNorm; per minibatch its importance is (dL/dgate)^2 = (sum over the BN's gamma, beta
  of w * dL/dw)^2, averaged over many minibatches; one global ranking, no per-layer normalisation.
* ``slimming`` -- Liu et al. 2017, "Learning Efficient Convolutional Networks through Network Slimming":
  sparsity training with an L1 penalty on every BN scale, then ONE global threshold on the raw |gamma|.
* ``greg`` -- Wang et al. 2021, "Neural Pruning via Growing Regularization" (GReg-1): the to-prune filters
  are fixed up front (L1 norm at the target's per-layer ratio); an L2 penalty on exactly those grows by
  ``delta_reg`` every ``update_every`` steps up to ``reg_ceiling`` and is then held.
* ``depgraph`` -- Fang et al. 2023, "DepGraph": group-norm sparsity learning (Torch-Pruning's
  ``GroupNormPruner.regularize``, the paper's own library), then *progressive* pruning as the reference
  implementation does it (Torch-Pruning ``reproduce/main.py``: many small global steps, importance
  recomputed on the network without the channels already removed).

Sparsity training is weight training: those methods return ``weights_changed=True`` and report their steps
both as search cost and as ``weight_train_*`` (see :func:`passprune.methods.cost`).

Shared across targets: slimming's and DepGraph's sparsity training never read the MACs target (an L1 / group-norm
penalty on every channel), so each registers it as its ``sparsify`` phase: the workflow trains once per (dataset,
arch, seed, method, training options) (``passprune sparsify``) and every target's search starts from those weights
and only thresholds / prunes progressively. GReg-1 is **not** shared: its penalty grows on exactly the filters
chosen for removal up front, and that choice is the L1 ranking at the target's per-layer ratio, so a different
target trains different filters towards zero (its training runs inside each target's search, as before).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from ..memory import gpu_autocast
from ..settings import TrainSettings
from ..structure import ChannelMasker, Group, PruningSpace, Structure
from . import SearchContext, SearchResult, baseline, cost, sparsity_phase
from .sparsity import run_sparsity_training

# ----------------------------------------------------------------------------- shared helpers


def _modules(space: PruningSpace) -> dict[str, nn.Module]:
    return dict(space.model.named_modules())


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1


def coupled_groups(space: PruningSpace) -> list[str]:
    """Groups whose channels are written by more than one dense (non-depthwise) layer: the residual streams,
    where several convolutions add into the same channels. The papers behind ``l1``, ``slimming`` and
    ``greg`` leave these unpruned in ResNets; a depthwise conv shares its input's channels without making
    a residual stream, so it does not count."""
    mods = _modules(space)
    return [g.id for g in space.groups if sum(not _is_depthwise(mods[w]) for w in g.writers) > 1]


def _protected(ctx: SearchContext) -> list[str]:
    return coupled_groups(ctx.space) if ctx.options.get("keep_coupled") else []


def raw_filters(space: PruningSpace, group: Group) -> torch.Tensor:
    """One row per channel of ``group``: the raw weights of every layer that writes it (a conv's filter
    ``W[j]``, a linear layer's row), concatenated; nothing from norm layers or the next layer's inputs.
    For a plain layer this is exactly its filters, as in Li et al. and He et al."""
    mods = _modules(space)
    rows = [mods[w].weight.detach().float().reshape(group.size, -1).cpu() for w in group.writers]
    return torch.cat(rows, dim=1)


def _select_uniform(ctx: SearchContext, scores: dict[str, torch.Tensor], protect: list[str]) -> Structure:
    """The same pruning ratio in every (unprotected) layer, keeping each layer's best-scoring channels.

    ``PruningSpace.select_uniform`` fixes the common ratio and adds one channel per group where the budget
    allows; when the residual streams are kept whole, the prunable layers are few and narrow and one
    channel can be worth more than 1% of the MACs, so the leftover budget is then filled one channel at a
    time, always to the layer with the lowest kept ratio whose next channel still fits (ratios stay equal
    up to a channel or two, and the target is met within 1%)."""
    space = ctx.space
    try:
        structure = space.select_uniform(scores, ctx.target, protect=protect)
    except ValueError as e:
        if not protect:
            raise
        raise ValueError(
            f"{e}; with keep_coupled the residual streams ({len(protect)} groups) keep all their "
            "channels, which this MACs target does not allow: set the method's option "
            "keep_coupled: false in the config's methods: block"
        ) from None
    counts = np.array([len(structure[g.id]) for g in space.groups], dtype=float)
    sizes = space.sizes.astype(float)
    budget = ctx.target * space.dense_macs
    used = space.macs(counts)
    while budget - used > 1e-3 * budget:
        for gi in np.argsort(counts / sizes, kind="stable"):
            if counts[gi] >= sizes[gi]:
                continue
            counts[gi] += 1
            cost_ = space.macs(counts)
            if cost_ <= budget:
                used = cost_
                break
            counts[gi] -= 1
        else:
            break  # no single channel fits any more
    out: Structure = {}
    for g, k in zip(space.groups, counts.astype(int)):
        top = torch.sort(-scores[g.id].detach().float().reshape(-1).cpu(), stable=True).indices[:k]
        out[g.id] = sorted(int(i) for i in top)
    return out


def _ignored(ctx: SearchContext) -> list[nn.Module]:
    return [_modules(ctx.space)[ctx.space.classifier]]


def _sparsity_train(ctx: SearchContext, after_backward: Callable[[nn.Module, int], None], tag: str) -> dict:
    """Train the dense weights with a method's regulariser added to the gradients (SGD with momentum 0.9,
    no Nesterov, cosine schedule, the method's own weight decay); returns its cost and facts."""
    o = ctx.options
    cfg = TrainSettings(
        epochs=o["epochs"],
        batch_size=ctx.batch_size,
        lr=o["lr"],
        nesterov=False,
        schedule="cosine",
        weight_decay=o["weight_decay"],
        label_smoothing=0.0,
        max_steps_per_epoch=o.get("max_steps_per_epoch"),
    )
    return run_sparsity_training(
        ctx, cfg, after_backward, f"{tag} sparsity training", repr((tag, sorted(o.items()), ctx.target, ctx.seed))
    )


SPARSITY = dict(epochs=1, lr=0.01, max_steps_per_epoch=None)  # the embedded default's short budget
#: The options a faithful method's sparsity training reads (:func:`_sparsity_train` and the penalty's ``reg``): what
#: its shared training (``sparsify``) depends on; the pruning options (keep_coupled, steps, normalizer) are not.
SPARSITY_OPTIONS = (*SPARSITY, "weight_decay", "reg")

# ----------------------------------------------------------------------------- one-shot criteria


def l1_filter_scores(space: PruningSpace) -> dict[str, torch.Tensor]:
    """Li et al.'s criterion: sum_j |F_ij| of each raw filter."""
    return {g.id: raw_filters(space, g).abs().sum(dim=1) for g in space.groups}


@baseline(
    "l1",
    "Li et al. 2017: L1 norm of raw filters, the same ratio in every layer, residual stream kept",
    keep_coupled=True,
)
def l1_method(ctx: SearchContext) -> SearchResult:
    structure = _select_uniform(ctx, l1_filter_scores(ctx.space), _protected(ctx))
    return SearchResult(structure, cost())


@baseline(
    "fpgm",
    "He et al. 2019: filters nearest the layer's geometric median go first, same ratio per layer",
    p=2,
)
def fpgm_method(ctx: SearchContext) -> SearchResult:
    scores = {}
    for g in ctx.space.groups:
        w = raw_filters(ctx.space, g)
        # sum of distances to the other filters of the layer: the smallest is the most replaceable filter
        scores[g.id] = torch.cdist(w[None], w[None], p=float(ctx.options["p"]))[0].sum(dim=1)
    return SearchResult(_select_uniform(ctx, scores, []), cost())


def taylor_gate_importance(ctx: SearchContext, batches: int) -> tuple[dict[str, torch.Tensor], int, int]:
    """Molchanov et al. 2019 (Taylor-FO on gates after BN): per minibatch, (dL/dgate_c)^2 for a gate of 1 on
    every channel c, averaged over ``batches`` minibatches.

    The gates are the structure's own masks (multiplied in after each group's norm layers), so a channel
    shared by several layers (a residual stream) has one gate whose gradient sums over them. BatchNorm is
    in training mode, as while the paper estimates importance during fine-tuning; the running statistics
    are restored afterwards, so the dense model is left as it was."""
    space, model = ctx.space, ctx.model  # on ctx.device already (the device contract)
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    was = model.training
    model.train()
    gates = {g.id: torch.ones(g.size, device=ctx.device, requires_grad=True) for g in space.groups}
    total = {g.id: torch.zeros(g.size, dtype=torch.float64) for g in space.groups}
    gen = torch.Generator().manual_seed(ctx.seed)
    n = images = 0
    try:
        with ChannelMasker(space, model) as masker:
            masker.set(gates)
            while n < batches:  # as many passes over the training split as ``batches`` needs
                seen = n
                for x, y in ctx.data.train.batches(
                    ctx.batch_size, shuffle=True, augment=False, generator=gen, device=ctx.device, drop_last=True
                ):
                    if n >= batches:
                        break
                    with gpu_autocast(ctx.device):  # bf16 on CUDA only (passprune.memory): CPU runs are unchanged
                        out = model(x).float()
                    loss = F.cross_entropy(out, y)
                    grads = torch.autograd.grad(loss, list(gates.values()))
                    for gid, gr in zip(gates, grads):
                        total[gid] += gr.detach().double().cpu() ** 2  # square per minibatch, then average
                    n += 1
                    images += y.numel()
                if n == seen:
                    break  # not one full batch in the split
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(buffers[k])
        model.train(was)
    if n == 0:
        raise ValueError(f"taylor: the training split gave no full batch of {ctx.batch_size} images")
    return {gid: (t / n).float() for gid, t in total.items()}, n, images


@baseline(
    "taylor",
    "Molchanov et al. 2019: (sum of w*g)^2 of BN gates per minibatch, averaged, global ranking",
    batches=32,
)
def taylor_method(ctx: SearchContext) -> SearchResult:
    t0 = time.time()
    scores, n, images = taylor_gate_importance(ctx, ctx.options["batches"])
    return SearchResult(
        ctx.space.select_global(scores, ctx.target),
        info={"taylor_batches": n, "gradient_seconds": time.time() - t0, **cost(search_steps=n, search_images=images)},
    )


# ----------------------------------------------------------------------------- network slimming


def bn_gamma_scores(space: PruningSpace) -> dict[str, torch.Tensor]:
    """Raw |gamma| per channel (the mean over the group's BN layers when several normalise it). A group
    without a norm layer gets +inf: slimming has no scale to judge it by, so it is never pruned."""
    mods = _modules(space)
    out = {}
    for g in space.groups:
        gammas = [
            mods[n].weight.detach().float().abs().cpu() for n in g.norms if getattr(mods[n], "weight", None) is not None
        ]
        out[g.id] = torch.stack(gammas).mean(dim=0) if gammas else torch.full((g.size,), float("inf"))
    return out


def slimming_sparsify(ctx: SearchContext) -> dict[str, Any]:
    """Liu et al.'s sparsity training (target-independent: the shared ``sparsify`` phase)."""
    # Torch-Pruning's BNScalePruner.regularize is exactly Liu et al.'s subgradient: grad += reg * sign(gamma)
    pruner = tp.pruner.BNScalePruner(
        ctx.model,
        ctx.space.example_inputs,
        importance=tp.importance.BNScaleImportance(),
        reg=ctx.options["reg"],
        ignored_layers=_ignored(ctx),
    )
    return _sparsity_train(ctx, lambda model, step: pruner.regularize(model), "slimming")


@baseline(
    "slimming",
    "Liu et al. 2017: L1 on BN scales during sparsity training, one global threshold on raw |gamma|",
    trains_weights=True,
    sparsify=slimming_sparsify,
    sparsify_options=SPARSITY_OPTIONS,
    **SPARSITY,
    reg=1e-4,
    weight_decay=1e-4,
    keep_coupled=True,
)
def slimming_method(ctx: SearchContext) -> SearchResult:
    info = sparsity_phase(ctx, slimming_sparsify)
    scores = bn_gamma_scores(ctx.space)
    protect = _protected(ctx) + [gid for gid, s in scores.items() if torch.isinf(s).all()]
    try:
        structure = ctx.space.select_global(scores, ctx.target, protect=protect)
    except ValueError as e:
        raise ValueError(
            f"slimming: {e}; set keep_coupled: false to let the threshold reach the residual streams"
        ) from None
    return SearchResult(structure, info, weights_changed=ctx.options["epochs"] > 0)


# ----------------------------------------------------------------------------- GReg-1


class GrowingL2:
    """Wang et al.'s GReg-1 penalty: ``reg * W_c`` added to the gradient of every filter ``W_c`` of the
    to-prune set (each layer that writes the channel). ``reg`` grows by ``delta`` every ``every`` steps until
    it reaches ``ceiling``, then is held there (the paper's "stabilize" phase). It is a function of the step
    alone, so a resumed sparsity training continues the same schedule."""

    def __init__(
        self, space: PruningSpace, pruned: dict[str, list[int]], *, delta: float, every: int, ceiling: float
    ) -> None:
        mods = _modules(space)
        self.targets = [
            (mods[w], torch.as_tensor(idx, dtype=torch.long))
            for g in space.groups
            if (idx := pruned.get(g.id))
            for w in g.writers
        ]
        self.delta, self.every, self.ceiling = delta, every, ceiling

    def reg_at(self, step: int) -> float:
        return min(self.ceiling, self.delta * (step // self.every + 1))

    @property
    def ceiling_step(self) -> int:
        """The first step at which the penalty is at its ceiling."""
        return (int(np.ceil(self.ceiling / self.delta - 1e-9)) - 1) * self.every

    def __call__(self, model: nn.Module, step: int) -> None:
        reg = self.reg_at(step)
        with torch.no_grad():
            for module, idx in self.targets:
                if module.weight.grad is None:
                    continue
                i = idx.to(module.weight.device)
                module.weight.grad[i] += reg * module.weight[i]


@baseline(
    "greg",
    "Wang et al. 2021 (GReg-1): to-prune filters fixed up front by L1, an L2 penalty on them grows to a ceiling",
    trains_weights=True,
    **SPARSITY,
    weight_decay=1e-4,
    delta_reg=0.05,
    update_every=1,
    reg_ceiling=1.0,
    keep_coupled=True,
)
def greg_method(ctx: SearchContext) -> SearchResult:
    """GReg-1. Its sparsity training is not shared across targets (no ``sparsify`` phase): the penalised filters are
    the L1 ranking's at the target's per-layer ratio, so each target trains its own weights, inside its search."""
    o = ctx.options
    structure = _select_uniform(ctx, l1_filter_scores(ctx.space), _protected(ctx))  # fixed before training
    pruned = {g.id: sorted(set(range(g.size)) - set(structure[g.id])) for g in ctx.space.groups}
    info: dict[str, Any] = cost()
    penalty = GrowingL2(ctx.space, pruned, delta=o["delta_reg"], every=o["update_every"], ceiling=o["reg_ceiling"])
    if o["epochs"] > 0:
        info = _sparsity_train(ctx, penalty, "greg")
    last = info["search_steps"] - 1  # the training's steps (a resumed run's earlier epochs included)
    info.update(
        greg_final_reg=penalty.reg_at(last) if last >= 0 else 0.0,
        greg_ceiling_step=penalty.ceiling_step,
        greg_reached_ceiling=last >= penalty.ceiling_step,
        greg_pruned_channels=sum(len(v) for v in pruned.values()),
    )
    return SearchResult(structure, info, weights_changed=o["epochs"] > 0)


# ----------------------------------------------------------------------------- DepGraph, progressive


_OUT_DIM0 = (nn.modules.batchnorm._BatchNorm,)


@torch.no_grad()
def zero_channels(space: PruningSpace, group: Group, idxs: list[int]) -> None:
    """Zero every parameter that physical removal of channels ``idxs`` of ``group`` would delete (the
    writers' filters, the norm layers' entries, the readers' input slices), using Torch-Pruning's own
    index mapping. Magnitude importances of the remaining channels then equal those of the physically
    pruned network (zeros add nothing), without renumbering channels."""
    if not idxs:
        return
    root = group.tp_group[0].dep
    pg = space.graph.get_pruning_group(root.target.module, root.handler, list(idxs))
    for dep, dep_idxs in pg:
        mod = dep.target.module
        if not isinstance(mod, (nn.Conv2d, nn.Linear, nn.modules.batchnorm._BatchNorm)) or not dep_idxs:
            continue
        i = torch.as_tensor(dep_idxs, dtype=torch.long, device=mod.weight.device)
        out = space.graph.is_out_channel_pruning_fn(dep.handler)
        if out or isinstance(mod, _OUT_DIM0) or _is_depthwise(mod):
            mod.weight[i] = 0
            if getattr(mod, "bias", None) is not None:
                mod.bias[i] = 0
        else:
            mod.weight[:, i] = 0


class _Removal:
    """Progressive pruning's bookkeeping over the flat list of all channels (group after group): which are
    removed, which group and index each is, and how many each group has left. One place for it, so the
    pruning loop reads as the schedule it is."""

    def __init__(self, space: PruningSpace) -> None:
        self.space = space
        self.floors = space.floors()
        self.sizes = space.sizes
        self.gid_of = np.repeat(np.arange(len(space.groups)), self.sizes)  # flat channel -> group index
        self.ch_of = np.concatenate([np.arange(n) for n in self.sizes])  # flat channel -> index in its group
        self.total = int(self.sizes.sum())
        self.removed = np.zeros(self.total, dtype=bool)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])

    def scores(self, importance, normalizer: str) -> dict[str, torch.Tensor]:
        """Group importance on the network as it is now, normalised over each group's remaining channels
        (``max`` or ``mean``); removed channels score -inf."""
        out = {}
        for gi, g in enumerate(self.space.groups):
            s = importance(g.tp_group).detach().float().cpu()
            gone = torch.from_numpy(self.removed[self.offsets[gi] : self.offsets[gi] + g.size].copy())
            ref = s[~gone].max() if normalizer == "max" else s[~gone].mean()
            s = s / (ref + 1e-12)
            s[gone] = -float("inf")
            out[g.id] = s
        return out

    def choose(self, scores: dict[str, torch.Tensor], goal: int) -> tuple[list[int], np.ndarray]:
        """The least important remaining channels that bring the removed count to ``goal``, never taking a
        group below its floor. Returns them (flat indices) and each group's channels left after them."""
        flat = torch.cat([scores[g.id] for g in self.space.groups]).numpy()
        left = self.sizes - np.bincount(self.gid_of[self.removed], minlength=len(self.sizes))
        new = []
        n_removed = int(self.removed.sum())
        for c in np.argsort(flat, kind="stable"):  # least important first; removed ones are -inf, skipped
            if n_removed >= goal:
                break
            gi = self.gid_of[c]
            if self.removed[c] or left[gi] <= self.floors[gi]:
                continue
            new.append(c)
            left[gi] -= 1
            n_removed += 1
        return new, left

    def remove(self, new: list[int]) -> None:
        """Mark ``new`` removed and zero what physical removal would delete (:func:`zero_channels`)."""
        self.removed[new] = True
        for gi, g in enumerate(self.space.groups):
            idxs = [int(self.ch_of[c]) for c in new if self.gid_of[c] == gi]
            zero_channels(self.space, g, idxs)

    def revived(self, structure: Structure) -> int:
        """Channels of ``structure`` an earlier step had removed."""
        groups = self.space.groups
        return sum(int(self.removed[self.offsets[gi] + i]) for gi, g in enumerate(groups) for i in structure[g.id])


def progressive_prune(ctx: SearchContext, importance, steps: int, normalizer: str) -> tuple[Structure, dict[str, int]]:
    """Torch-Pruning's progressive pruning (``reproduce/main.py``: ``pruning_ratio=1.0``, ``iterative_steps``
    small global steps until the speed-up is reached), on masks: step k removes the globally least important
    remaining channels until k/steps of all prunable channels are gone (each group keeps its floor), with
    the group importance recomputed on the network without the removed channels and normalised over each
    group's remaining channels (``normalizer``: max or mean). It stops before the first step that would go
    below the MACs target; a last global ranking of the remaining channels then fits the target exactly.
    The model's weights are restored afterwards. Returns the structure and facts for ``info``."""
    space = ctx.space
    saved = {k: v.detach().clone() for k, v in space.model.state_dict().items()}
    state = _Removal(space)
    budget = ctx.target * space.dense_macs
    taken = 0
    try:
        for k in range(1, steps + 1):
            goal = int(state.total * k / steps)
            if goal <= int(state.removed.sum()):
                continue  # the schedule's channel count has not reached the next channel yet
            new, left = state.choose(state.scores(importance, normalizer), goal)
            if not new:
                break  # every group is at its floor: nothing more to remove
            if space.macs(left.astype(float)) < budget:
                break  # this step would overshoot the target: fit exactly below
            state.remove(new)
            taken = k
        structure = space.select_global(state.scores(importance, normalizer), ctx.target)
    finally:
        space.model.load_state_dict(saved)
    # The exact fit may take back a channel an earlier step removed, only when every remaining channel is too
    # expensive for the leftover budget; counted, never silent.
    return structure, {
        "progressive_steps": taken,
        "progressive_removed_channels": int(state.removed.sum()),
        "progressive_revived_channels": state.revived(structure),
    }


def depgraph_sparsify(ctx: SearchContext) -> dict[str, Any]:
    """DepGraph's group-norm sparsity learning (target-independent: the shared ``sparsify`` phase)."""
    pruner = tp.pruner.GroupNormPruner(
        ctx.model,
        ctx.space.example_inputs,
        importance=tp.importance.GroupMagnitudeImportance(p=2, normalizer=None),
        reg=ctx.options["reg"],
        ignored_layers=_ignored(ctx),
    )
    return _sparsity_train(ctx, lambda model, step: pruner.regularize(model), "depgraph")


@baseline(
    "depgraph",
    "Fang et al. 2023: group-norm sparsity learning, then progressive global pruning (reference implementation)",
    trains_weights=True,
    sparsify=depgraph_sparsify,
    sparsify_options=SPARSITY_OPTIONS,
    **SPARSITY,
    reg=5e-4,
    weight_decay=0.0,
    steps=400,
    normalizer="max",
)
def depgraph_method(ctx: SearchContext) -> SearchResult:
    o = ctx.options
    if o["normalizer"] not in ("max", "mean"):
        raise ValueError(
            f"depgraph: option normalizer is {o['normalizer']!r}; use 'max' (the reference's CIFAR "
            "recipe) or 'mean' (Torch-Pruning's default)"
        )
    info: dict[str, Any] = sparsity_phase(ctx, depgraph_sparsify)
    t0 = time.time()
    imp = tp.importance.GroupMagnitudeImportance(p=2, normalizer=None)
    structure, facts = progressive_prune(ctx, imp, o["steps"], o["normalizer"])
    info.update(facts, progressive_seconds=time.time() - t0)
    return SearchResult(structure, info, weights_changed=o["epochs"] > 0)
