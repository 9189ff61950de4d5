"""``PruningSpace``: the one object every method, masker and report holds for a model instance.

It ties the concerns of this package together: the dependency groups and their masks (:mod:`.groups`),
the MACs model (:mod:`.cost`) and selection under a budget (:mod:`.selection`). Its methods are thin: each
delegates to the module that owns the concept, so that module can be read on its own. Those modules never
import the space (selection reads a :class:`~.selection.GroupCosts`); the maskers (:mod:`.masks`) and physical
removal (:mod:`.removal`) build on it. Imports run one way: cost <- groups <- selection <- space <- masks,
removal (``tests/test_structure.py`` checks that no module of the package imports one that imports it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from . import selection
from .cost import MacsModel, layer_costs
from .groups import Group, Structure, find_groups, masks_from_structure
from .selection import GroupCosts, Scores


class PruningSpace:
    """Dependency groups + MACs model of one model instance.

    Build it on the model whose channels will be masked or removed; ``example_inputs`` fixes the
    resolution (MACs depend on it).
    """

    def __init__(self, model: nn.Module, example_inputs: torch.Tensor, max_prune_frac: float = 0.9) -> None:
        if not 0.0 <= max_prune_frac < 1.0:
            raise ValueError(f"max_prune_frac must be in [0, 1), got {max_prune_frac}")
        self.model = model
        self.example_inputs = example_inputs
        self.max_prune_frac = max_prune_frac
        was_training = model.training
        model.eval()
        self.modules = dict(model.named_modules())
        found = find_groups(model, example_inputs, self.modules)
        self.graph = found.graph
        self.classifier = found.classifier
        self.groups = found.groups
        self.by_id = {grp.id: grp for grp in self.groups}
        self.layers = layer_costs(self.modules, found.out_positions, found.in_group_of, found.out_group_of)
        self._cost = MacsModel(self.layers, {grp.id: i for i, grp in enumerate(self.groups)})
        self.dense_macs = self.macs({g.id: g.size for g in self.groups})
        model.train(was_training)

    # ------------------------------------------------------------------ MACs model
    def macs(self, keep: Mapping[str, int] | Sequence[int] | np.ndarray) -> float:
        """Conv+linear MACs of the network with ``keep`` channels per group (counts the next layer's
        input shrinkage, i.e. W_hat_i = M_{i-1} * W_i * M_i)."""
        if isinstance(keep, Mapping):
            return self._cost(np.array([float(keep[g.id]) for g in self.groups]))
        return self._cost(np.asarray(keep, dtype=float))

    def macs_share(self) -> np.ndarray:
        """How much of the dense MACs each group's channels carry: c_g * dMACs/dc_g / MACs at the dense
        widths (a layer between two groups counts for both). An architecture-agnostic cost descriptor."""
        return self._cost.share(self.sizes, self.dense_macs)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([g.size for g in self.groups])

    @property
    def group_costs(self) -> GroupCosts:
        """What selection under a budget reads of this space (built on demand, so it follows ``max_prune_frac``)."""
        return GroupCosts(self.groups, self.macs, self.dense_macs, self.max_prune_frac)

    # ------------------------------------------------------------------ selection under a budget
    def min_keep(self, group: Group, min_channels: int = 1) -> int:
        """The per-group floor: never empty a group or collapse a residual stream.

        The larger of ``min_channels`` (an absolute floor, so that a narrow residual stream keeps a usable
        width however cheap its channels look) and the ``max_prune_frac`` cap, never more than the group has.
        """
        return selection.min_keep(group, self.max_prune_frac, min_channels)

    def floors(self, min_channels: int = 1, protect: Collection[str] = ()) -> np.ndarray:
        """Per-group minimum kept channels: :meth:`min_keep`, and the full width for ``protect``ed groups
        (e.g. the first layer, which sees the raw image and whose pruning every later layer inherits)."""
        return selection.floors(self.group_costs, min_channels, protect)

    def select_global(
        self, scores: Scores, target: float, *, min_channels: int = 1, protect: Collection[str] = ()
    ) -> Structure:
        """Keep the globally highest-scoring channels such that MACs <= target * dense MACs.

        Scores must be comparable across groups (that is the method's job). Ties break by position, so
        the result is deterministic. The largest prefix of the global ranking that fits the budget is
        found by bisection; each group keeps at least its floor (:meth:`floors`: ``min_keep`` with
        ``min_channels``, everything for the groups in ``protect``) of its own best channels.
        """
        return selection.select_global(self.group_costs, scores, target, min_channels=min_channels, protect=protect)

    def select_uniform(
        self, scores: Scores, target: float, *, min_channels: int = 1, protect: Collection[str] = ()
    ) -> Structure:
        """Prune every group by (nearly) the same ratio, chosen so that MACs <= target.

        Uniform up to one channel: after the common ratio is fixed by bisection, single channels are
        added (groups with the largest rounding remainder first) while the budget allows, so the target
        is met within 1% even when many groups of equal width would otherwise move in lock-step. The
        floors (``min_channels``, ``protect``) are the same as :meth:`select_global`'s.
        """
        return selection.select_uniform(self.group_costs, scores, target, min_channels=min_channels, protect=protect)

    # ------------------------------------------------------------------ structures and masks
    def keep_counts(self, structure: Structure) -> dict[str, int]:
        return {g.id: len(structure.get(g.id, range(g.size))) for g in self.groups}

    def structure_macs_ratio(self, structure: Structure) -> float:
        return self.macs(self.keep_counts(structure)) / self.dense_macs

    def full_structure(self) -> Structure:
        return {g.id: list(range(g.size)) for g in self.groups}

    def masks_from_structure(
        self, structure: Structure, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> dict[str, torch.Tensor]:
        return masks_from_structure(self.groups, structure, device, dtype)

    def validate(self, structure: Structure) -> None:
        """Raise a clear error if a structure does not fit this space."""
        unknown = set(structure) - set(self.by_id)
        if unknown:
            raise ValueError(f"structure names groups this architecture does not have: {sorted(unknown)[:5]}")
        for gid, kept in structure.items():
            size = self.by_id[gid].size
            if not kept:
                raise ValueError(f"structure empties group {gid}")
            if len(set(kept)) != len(kept) or min(kept) < 0 or max(kept) >= size:
                raise ValueError(f"structure has invalid indices for group {gid} (size {size})")
