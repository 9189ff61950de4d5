"""Physical pruning: remove the channels a structure drops, so the network really is smaller."""

from __future__ import annotations

import torch
import torch.nn as nn

from .groups import Structure
from .space import PruningSpace


def prune_model(model: nn.Module, example_inputs: torch.Tensor, structure: Structure) -> nn.Module:
    """Physically remove every channel not in ``structure`` (in place; returns the model).

    All groups are planned on the unpruned graph, then pruned: each group owns a distinct channel
    dimension, so indices in the dense model's numbering stay valid while other groups shrink.
    """
    space = PruningSpace(model, example_inputs)
    space.validate(structure)
    plans = []
    for g in space.groups:
        kept = set(structure.get(g.id, range(g.size)))
        drop = [i for i in range(g.size) if i not in kept]
        if drop:
            root = g.tp_group[0].dep
            plans.append((root.target.module, root.handler, drop))
    for module, fn, drop in plans:
        pg = space.graph.get_pruning_group(module, fn, drop)
        if not space.graph.check_pruning_group(pg):
            raise RuntimeError(f"torch-pruning rejected the pruning of {len(drop)} channels at {module}")
        pg.prune()
    return model
