"""Dependency groups: which channels of a network must be kept or pruned together.

The groups come from Torch-Pruning's ``DependencyGraph``: channels coupled through residual adds or
depthwise convs share one decision. The classifier's outputs are never pruned. A group's id is the name of
its root module, stable across fresh builds of the same architecture, and a *structure* is
``{group_id: sorted kept channel indices}`` in the dense model's indexing.

:func:`find_groups` traces one model instance once and returns the groups in forward order, plus what the
MACs model needs (which group each layer reads and writes, each layer's output positions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch_pruning as tp

from .cost import WEIGHT_LAYERS

Structure = dict[str, list[int]]


def classifier_of(model: nn.Module) -> nn.Linear:
    """The classifier is the last ``nn.Linear`` in module order (a registry convention, tested)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return linears[-1]


@dataclass
class Group:
    """One coupled set of channels that share a single keep/prune decision."""

    id: str
    size: int
    order: int  # position in forward (topological) order; PASS's LSTM steps in this order
    writers: list[str]  # conv/linear layers whose *output* channels are these channels
    norms: list[str]  # norm layers over these channels (their gamma/beta are per-channel statistics)
    mask_at: list[str]  # modules whose outputs are multiplied by the mask (after norms)
    tp_group: tp.Group = field(repr=False, default=None)  # type: ignore[assignment]


def masks_from_structure(
    groups: Sequence[Group],
    structure: Structure,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """One 0/1 mask per group: 1 at the kept channels (a group the structure omits keeps everything).

    Here rather than in :mod:`.masks` because it needs only groups and a structure: the space hands it out
    (``PruningSpace.masks_from_structure``) while the maskers that apply it build on the space."""
    masks = {}
    for g in groups:
        m = torch.zeros(g.size, device=device, dtype=dtype)
        m[torch.as_tensor(structure.get(g.id, range(g.size)), dtype=torch.long)] = 1.0
        masks[g.id] = m
    return masks


@dataclass
class DependencyGroups:
    """What tracing one model instance finds: its groups and how its layers connect to them."""

    graph: tp.DependencyGraph
    classifier: str  # name of the classifier module (never pruned)
    groups: list[Group]  # in forward order, ``order`` = position in this list
    in_group_of: dict[str, str]  # layer name -> the group its input channels belong to
    out_group_of: dict[str, str]  # layer name -> the group its output channels belong to
    out_positions: dict[str, int]  # conv/linear name -> output positions per channel (H x W, or 1)


def find_groups(model: nn.Module, example_inputs: torch.Tensor, modules: dict[str, nn.Module]) -> DependencyGroups:
    """Trace ``model`` (in its current mode) on ``example_inputs`` and collect its dependency groups."""
    names = {m: n for n, m in modules.items()}
    exec_order, out_positions = trace_shapes(model, example_inputs, names)
    # Torch-Pruning traces the autograd graph: frozen parameters (PASS freezes the CNN) would hide layers.
    frozen = [p for p in model.parameters() if not p.requires_grad]
    for p in frozen:
        p.requires_grad_(True)
    try:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    finally:
        for p in frozen:
            p.requires_grad_(False)
    classifier = names[classifier_of(model)]
    raw = graph.get_all_groups(ignored_layers=[modules[classifier]], root_module_types=WEIGHT_LAYERS)
    groups: list[Group] = []
    in_group_of: dict[str, str] = {}
    out_group_of: dict[str, str] = {}
    for g in raw:
        root = names[g[0].dep.target.module]
        writers, norms, readers = _roles(graph, g, names)
        writers = sorted(set(writers), key=exec_order.__getitem__)
        for w in writers:
            if w in out_group_of:
                raise ValueError(f"layer {w} writes two groups; unsupported topology")
            out_group_of[w] = root
        for r in set(readers):
            if r in in_group_of and in_group_of[r] != root:
                raise ValueError(f"layer {r} reads two groups (concatenation); unsupported topology")
            in_group_of[r] = root
        groups.append(
            Group(
                id=root,
                size=len(g[0].idxs),
                order=min(exec_order[w] for w in writers),
                writers=writers,
                norms=sorted(set(norms), key=lambda n: exec_order.get(n, 0)),
                mask_at=mask_points(graph, modules, writers, set(norms), names),
                tp_group=g,
            )
        )
    groups.sort(key=lambda grp: grp.order)
    for i, grp in enumerate(groups):
        grp.order = i
    return DependencyGroups(graph, classifier, groups, in_group_of, out_group_of, out_positions)


def _roles(
    graph: tp.DependencyGraph, group: tp.Group, names: dict[nn.Module, str]
) -> tuple[list[str], list[str], list[str]]:
    """Which named layers of one Torch-Pruning group write its channels, normalise them, or read them.

    A depthwise conv both writes and reads the group's channels; Torch-Pruning's internal ops (adds,
    reshapes) have no name and play no role. Returns (writers, norms, readers), in the group's item order."""
    writers, norms, readers = [], [], []
    for item in group:
        mod = item.dep.target.module
        name = names.get(mod)
        if name is None:  # torch-pruning's internal ops (adds, reshapes)
            continue
        out_fn = graph.is_out_channel_pruning_fn(item.dep.handler)
        if isinstance(mod, WEIGHT_LAYERS):
            if out_fn:
                writers.append(name)
                if isinstance(mod, nn.Conv2d) and mod.groups > 1:
                    readers.append(name)  # depthwise: its inputs are the same channels
            else:
                readers.append(name)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm) or isinstance(mod, nn.GroupNorm):
            norms.append(name)
    return writers, norms, readers


def trace_shapes(model: nn.Module, x: torch.Tensor, names: dict[nn.Module, str]):
    """One forward pass: the execution order of the leaf modules and each conv/linear's output positions."""
    order: dict[str, int] = {}
    positions: dict[str, int] = {}
    hooks = []

    def hook(mod, _inp, out):
        n = names[mod]
        order.setdefault(n, len(order))
        if isinstance(mod, WEIGHT_LAYERS):
            positions[n] = int(np.prod(out.shape[2:])) if out.dim() > 2 else 1

    for mod in model.modules():
        if len(list(mod.children())) == 0:
            hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return order, positions


def mask_points(
    graph: tp.DependencyGraph,
    modules: dict[str, nn.Module],
    writers: list[str],
    norms: set[str],
    names: dict[nn.Module, str],
) -> list[str]:
    """After each writer, mask at the norm layer that consumes it if there is one (so the norm's
    bias cannot revive a removed channel), else at the writer itself."""
    points = []
    for w in writers:
        node = graph.module2node[modules[w]]
        follow = [names.get(o.module) for o in node.outputs]
        bn = [n for n in follow if n in norms]
        points.append(bn[0] if bn else w)
    return points
