"""The pruning space of a network: coupled channel groups, a MACs model, masks and physical removal.

Why one package: every method (PASS, its ablations, every baseline) answers the same question -- which
channels of each *dependency group* to keep under a MACs budget -- and everything downstream (masked
forward, physical pruning, MACs accounting) must agree on what a group and a channel index mean. One module
per concept:

* :mod:`.groups` -- dependency groups (Torch-Pruning's ``DependencyGraph``), ``Group``, ``Structure`` and a
  structure's 0/1 masks;
* :mod:`.cost` -- the MACs model and the reference counters (``conv_linear_macs``, ``count_macs_params``,
  both in one pass: ``count_costs``);
* :mod:`.selection` -- from scores to a structure under a MACs budget (global ranking, uniform ratio);
* :mod:`.masks` -- masking hooks (``HookMasker``, ``ChannelMasker``), exactly equivalent to removal;
* :mod:`.removal` -- physical pruning (``prune_model``);
* :mod:`.space` -- ``PruningSpace``, the object that ties them together for one model instance.

The modules import one way (cost <- groups <- selection <- space <- masks, removal): the lower ones take
plain groups, structures and a selection ``GroupCosts``, never the space.

Conventions: a *structure* is ``{group_id: sorted kept channel indices}`` in the dense model's indexing;
``macs`` counts conv and linear multiply-accumulates (``FlopCounterMode`` reports exactly 2x); the classifier's
outputs are never pruned.
"""

from __future__ import annotations

from .cost import LayerCost, MacsModel, ModelCost, conv_linear_macs, count_costs, count_macs_params
from .groups import Group, Structure, classifier_of
from .masks import ChannelMasker, HookMasker
from .removal import prune_model
from .space import PruningSpace

__all__ = [
    "ChannelMasker",
    "Group",
    "HookMasker",
    "LayerCost",
    "MacsModel",
    "ModelCost",
    "PruningSpace",
    "Structure",
    "classifier_of",
    "conv_linear_macs",
    "count_costs",
    "count_macs_params",
    "prune_model",
]
