"""Selection under a MACs budget: from per-channel scores to a structure that meets the target.

Every method ends here. Scores say which channels matter (that is the method's job, and for
:func:`select_global` they must be comparable across groups); these functions decide how many channels
each group keeps so that the MACs are at most ``target x`` the dense MACs, never emptying a group
(:func:`min_keep`, :func:`floors`), and then keep each group's best channels. Ties break by position, so
every result is deterministic.

What selection needs to know of a network is a :class:`GroupCosts` (groups, MACs model, floor policy), not the
whole :class:`~passprune.structure.space.PruningSpace`: the space builds one and delegates here, so this
module sits below it and the package imports in one direction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .groups import Group, Structure

Scores = Mapping[str, torch.Tensor]  # group id -> one score per channel (higher = keep)


@dataclass(frozen=True)
class GroupCosts:
    """A network as selection sees it: its groups in forward order, the MACs of any per-group widths, the
    dense MACs and how much of a group may go (``max_prune_frac``)."""

    groups: Sequence[Group]
    macs: Callable[[np.ndarray], float]  # conv+linear MACs at the given kept width of each group
    dense_macs: float
    max_prune_frac: float

    @property
    def sizes(self) -> np.ndarray:
        return np.array([g.size for g in self.groups])


def check_target(target: float) -> None:
    if not 0.0 < target <= 1.0:
        raise ValueError(f"MACs target must be in (0, 1], got {target}")


def min_keep(group: Group, max_prune_frac: float, min_channels: int = 1) -> int:
    """The per-group floor: the larger of ``min_channels`` and the ``max_prune_frac`` cap, never more than
    the group has."""
    if int(min_channels) != min_channels or min_channels < 1:
        raise ValueError(f"min_channels must be an integer >= 1, got {min_channels!r}")
    cap = math.ceil(group.size * (1.0 - max_prune_frac) - 1e-9)
    return min(group.size, max(1, int(min_channels), cap))


def floors(net: GroupCosts, min_channels: int = 1, protect: Collection[str] = ()) -> np.ndarray:
    """Per-group minimum kept channels: :func:`min_keep`, and the full width for ``protect``ed groups."""
    unknown = set(protect) - {g.id for g in net.groups}
    if unknown:
        raise ValueError(f"cannot protect unknown groups {sorted(unknown)[:5]}")
    frac = net.max_prune_frac
    return np.array([g.size if g.id in protect else min_keep(g, frac, min_channels) for g in net.groups], dtype=float)


def select_global(
    net: GroupCosts, scores: Scores, target: float, *, min_channels: int = 1, protect: Collection[str] = ()
) -> Structure:
    """Keep the globally highest-scoring channels such that MACs <= target * dense MACs.

    The largest prefix of the global ranking that fits the budget is found by bisection; each group keeps
    at least its floor (:func:`floors`) of its own best channels.
    """
    check_target(target)
    groups = net.groups
    flat = torch.cat([scores[g.id].detach().float().reshape(-1).cpu() for g in groups])
    gid = torch.cat([torch.full((g.size,), i) for i, g in enumerate(groups)])
    order = torch.sort(-flat, stable=True).indices
    gid_sorted = gid[order].numpy()
    floor = floors(net, min_channels, protect)
    budget = target * net.dense_macs

    def counts(k: int) -> np.ndarray:
        return np.maximum(floor, np.bincount(gid_sorted[:k], minlength=len(groups)))

    lo, hi = 0, len(gid_sorted)
    if net.macs(counts(0)) > budget:
        raise ValueError(
            f"MACs target {target} is below what the per-group floor allows "
            f"({net.macs(counts(0)) / net.dense_macs:.3f}); raise the target or max_prune_frac"
        )
    while lo < hi:  # largest k with macs(counts(k)) <= budget
        mid = (lo + hi + 1) // 2
        if net.macs(counts(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    prefix = np.bincount(gid_sorted[:lo], minlength=len(groups)).astype(float)
    # The next channel in the ranking may be an expensive one (a wide residual stream in a small net
    # can cost >1% of the MACs alone); keep walking down the ranking and take every channel that still
    # fits, so the budget is met tightly without ever overshooting it.
    used = net.macs(np.maximum(floor, prefix))
    for gi in gid_sorted[lo:]:
        if budget - used <= 1e-3 * budget:
            break
        prefix[gi] += 1
        cost = net.macs(np.maximum(floor, prefix))
        if cost <= budget:
            used = cost
        else:
            prefix[gi] -= 1
    final = np.maximum(floor, prefix)
    return top_per_group(groups, scores, final.astype(int))


def select_uniform(
    net: GroupCosts, scores: Scores, target: float, *, min_channels: int = 1, protect: Collection[str] = ()
) -> Structure:
    """Prune every group by (nearly) the same ratio, chosen so that MACs <= target.

    Uniform up to one channel: after the common ratio is fixed by bisection, single channels are added
    (groups with the largest rounding remainder first) while the budget allows, so the target is met
    within 1% even when many groups of equal width would otherwise move in lock-step.
    """
    check_target(target)
    sizes = net.sizes.astype(float)
    floor = floors(net, min_channels, protect)
    budget = target * net.dense_macs

    def counts(r: float) -> np.ndarray:
        return np.maximum(floor, np.floor(r * sizes))

    if net.macs(floor) > budget:
        raise ValueError(f"MACs target {target} is below what the per-group floor allows")
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if net.macs(counts(mid)) <= budget:
            lo = mid
        else:
            hi = mid
    c = counts(lo)
    remainder = lo * sizes - np.floor(lo * sizes)
    for i in np.argsort(-remainder, kind="stable"):
        if c[i] < sizes[i]:
            c[i] += 1
            if net.macs(c) > budget:
                c[i] -= 1
    return top_per_group(net.groups, scores, c.astype(int))


def top_per_group(groups: Sequence[Group], scores: Scores, counts: np.ndarray) -> Structure:
    """Each group's ``counts[i]`` highest-scoring channels, sorted (ties: the lower index first)."""
    out: Structure = {}
    for g, k in zip(groups, counts):
        s = scores[g.id].detach().float().reshape(-1).cpu()
        top = torch.sort(-s, stable=True).indices[: int(k)]
        out[g.id] = sorted(int(i) for i in top)
    return out
