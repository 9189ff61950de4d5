"""The pruning space of a network: coupled channel groups, a MACs model, masks and physical removal.

Why one module: every method (PASS, its ablations, every baseline) answers the same question -- which
channels of each *dependency group* to keep under a MACs budget -- and everything downstream (masked
forward, physical pruning, MACs accounting) must agree on what a group and a channel index mean. The groups
come from Torch-Pruning's ``DependencyGraph``: channels coupled through residual adds or depthwise convs
share one decision. The classifier's outputs are never pruned.

Conventions
-----------
* ``macs`` counts multiply-accumulates of conv and linear layers (what pruning papers call "FLOPs");
  ``FlopCounterMode`` reports exactly 2x this number. Reports also give Torch-Pruning's own count, which
  adds BatchNorm and is within ~0.5% of ours.
* A *structure* is ``{group_id: sorted kept channel indices}`` in the dense model's indexing; the group id
  is the name of the group's root module, stable across fresh builds of the same architecture.
* Masking multiplies a group's output activations *after its norm layers* by a 0/1 (or straight-through)
  mask. With BatchNorm in eval mode this is exactly equivalent to removing the channels (tested).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from abc import ABC, abstractmethod
from typing import Collection, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch_pruning as tp

Structure = dict[str, list[int]]

_WEIGHT_LAYERS = (nn.Conv2d, nn.Linear)


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


@dataclass
class LayerCost:
    """MACs of one conv/linear as a function of its in/out group widths."""

    name: str
    per_unit: float  # kernel area x output positions
    in_group: str | None
    out_group: str | None
    in_fixed: int  # channel count when in_group is None
    out_fixed: int
    conv_groups: int  # 1 for dense convs; depthwise convs are handled by ``depthwise``
    depthwise: bool


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
        names = {m: n for n, m in self.modules.items()}
        exec_order, out_positions = self._trace_shapes(model, example_inputs, names)
        # Torch-Pruning traces the autograd graph: frozen parameters (PASS freezes the CNN) would hide layers.
        frozen = [p for p in model.parameters() if not p.requires_grad]
        for p in frozen:
            p.requires_grad_(True)
        try:
            self.graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
        finally:
            for p in frozen:
                p.requires_grad_(False)
        self.classifier = names[classifier_of(model)]
        raw = self.graph.get_all_groups(
            ignored_layers=[self.modules[self.classifier]], root_module_types=_WEIGHT_LAYERS
        )
        groups: list[Group] = []
        in_group_of: dict[str, str] = {}
        out_group_of: dict[str, str] = {}
        for g in raw:
            root = names[g[0].dep.target.module]
            writers, norms, readers = [], [], []
            for item in g:
                mod = item.dep.target.module
                name = names.get(mod)
                if name is None:  # torch-pruning's internal ops (adds, reshapes)
                    continue
                out_fn = self.graph.is_out_channel_pruning_fn(item.dep.handler)
                if isinstance(mod, _WEIGHT_LAYERS):
                    if out_fn:
                        writers.append(name)
                        if isinstance(mod, nn.Conv2d) and mod.groups > 1:
                            readers.append(name)  # depthwise: its inputs are the same channels
                    else:
                        readers.append(name)
                elif isinstance(mod, nn.modules.batchnorm._BatchNorm) or isinstance(mod, nn.GroupNorm):
                    norms.append(name)
            writers = sorted(set(writers), key=exec_order.__getitem__)
            for w in writers:
                if w in out_group_of:
                    raise ValueError(f"layer {w} writes two groups; unsupported topology")
                out_group_of[w] = root
            for r in set(readers):
                if r in in_group_of and in_group_of[r] != root:
                    raise ValueError(f"layer {r} reads two groups (concatenation); unsupported topology")
                in_group_of[r] = root
            mask_at = self._mask_points(writers, set(norms), names)
            groups.append(
                Group(
                    id=root,
                    size=len(g[0].idxs),
                    order=min(exec_order[w] for w in writers),
                    writers=writers,
                    norms=sorted(set(norms), key=lambda n: exec_order.get(n, 0)),
                    mask_at=mask_at,
                    tp_group=g,
                )
            )
        groups.sort(key=lambda grp: grp.order)
        for i, grp in enumerate(groups):
            grp.order = i
        self.groups = groups
        self.by_id = {grp.id: grp for grp in groups}
        self.layers = []
        for name, mod in self.modules.items():
            if not isinstance(mod, _WEIGHT_LAYERS) or name not in out_positions:
                continue
            if isinstance(mod, nn.Conv2d):
                k = mod.kernel_size[0] * mod.kernel_size[1]
                cin, cout, cg = mod.in_channels, mod.out_channels, mod.groups
            else:
                k, cin, cout, cg = 1, mod.in_features, mod.out_features, 1
            depthwise = cg > 1 and cg == cin == cout
            if cg > 1 and not depthwise:
                raise ValueError(f"grouped (non-depthwise) conv {name} is not supported")
            self.layers.append(
                LayerCost(name, float(k * out_positions[name]), in_group_of.get(name), out_group_of.get(name),
                          cin, cout, cg, depthwise)
            )
        self._gidx = {grp.id: i for i, grp in enumerate(groups)}
        self._cost_arrays()
        self.dense_macs = self.macs({g.id: g.size for g in groups})
        model.train(was_training)

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _trace_shapes(model: nn.Module, x: torch.Tensor, names: dict[nn.Module, str]):
        order: dict[str, int] = {}
        positions: dict[str, int] = {}
        hooks = []

        def hook(mod, _inp, out):
            n = names[mod]
            order.setdefault(n, len(order))
            if isinstance(mod, _WEIGHT_LAYERS):
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

    def _mask_points(self, writers: list[str], norms: set[str], names) -> list[str]:
        """After each writer, mask at the norm layer that consumes it if there is one (so the norm's
        bias cannot revive a removed channel), else at the writer itself."""
        points = []
        for w in writers:
            node = self.graph.module2node[self.modules[w]]
            follow = [names.get(o.module) for o in node.outputs]
            bn = [n for n in follow if n in norms]
            points.append(bn[0] if bn else w)
        return points

    def _cost_arrays(self) -> None:
        n = len(self.groups)
        self._const = 0.0
        self._lin = np.zeros(n)
        pairs: dict[tuple[int, int], float] = {}
        for L in self.layers:
            gi = self._gidx.get(L.in_group) if L.in_group else None
            go = self._gidx.get(L.out_group) if L.out_group else None
            if L.depthwise:
                if go is None:
                    self._const += L.per_unit * L.out_fixed
                else:
                    self._lin[go] += L.per_unit
                continue
            if gi is None and go is None:
                self._const += L.per_unit * L.in_fixed * L.out_fixed
            elif gi is None:
                self._lin[go] += L.per_unit * L.in_fixed
            elif go is None:
                self._lin[gi] += L.per_unit * L.out_fixed
            else:
                pairs[(gi, go)] = pairs.get((gi, go), 0.0) + L.per_unit
        self._pair_i = np.array([p[0] for p in pairs], dtype=np.int64)
        self._pair_o = np.array([p[1] for p in pairs], dtype=np.int64)
        self._pair_w = np.array(list(pairs.values()))

    # ------------------------------------------------------------------ MACs model
    def macs(self, keep: Mapping[str, int] | Sequence[int] | np.ndarray) -> float:
        """Conv+linear MACs of the network with ``keep`` channels per group (counts the next layer's
        input shrinkage, i.e. W_hat_i = M_{i-1} * W_i * M_i)."""
        c = self._counts(keep)
        return float(self._const + self._lin @ c + (self._pair_w * c[self._pair_i] * c[self._pair_o]).sum())

    def _counts(self, keep) -> np.ndarray:
        if isinstance(keep, Mapping):
            return np.array([float(keep[g.id]) for g in self.groups])
        return np.asarray(keep, dtype=float)

    def min_keep(self, group: Group, min_channels: int = 1) -> int:
        """The per-group floor: never empty a group or collapse a residual stream.

        The larger of ``min_channels`` (an absolute floor, so that a narrow residual stream keeps a usable
        width however cheap its channels look) and the ``max_prune_frac`` cap, never more than the group has.
        """
        if int(min_channels) != min_channels or min_channels < 1:
            raise ValueError(f"min_channels must be an integer >= 1, got {min_channels!r}")
        cap = math.ceil(group.size * (1.0 - self.max_prune_frac) - 1e-9)
        return min(group.size, max(1, int(min_channels), cap))

    def floors(self, min_channels: int = 1, protect: Collection[str] = ()) -> np.ndarray:
        """Per-group minimum kept channels: :meth:`min_keep`, and the full width for ``protect``ed groups
        (e.g. the first layer, which sees the raw image and whose pruning every later layer inherits)."""
        unknown = set(protect) - set(self.by_id)
        if unknown:
            raise ValueError(f"cannot protect unknown groups {sorted(unknown)[:5]}")
        return np.array([g.size if g.id in protect else self.min_keep(g, min_channels) for g in self.groups],
                        dtype=float)

    def macs_share(self) -> np.ndarray:
        """How much of the dense MACs each group's channels carry: c_g * dMACs/dc_g / MACs at the dense
        widths (a layer between two groups counts for both). An architecture-agnostic cost descriptor."""
        c = self.sizes.astype(float)
        grad = self._lin.copy()
        np.add.at(grad, self._pair_i, self._pair_w * c[self._pair_o])
        np.add.at(grad, self._pair_o, self._pair_w * c[self._pair_i])
        return c * grad / self.dense_macs

    @property
    def sizes(self) -> np.ndarray:
        return np.array([g.size for g in self.groups])

    # ------------------------------------------------------------------ selection under a budget
    def select_global(self, scores: Mapping[str, torch.Tensor], target: float, *, min_channels: int = 1,
                      protect: Collection[str] = ()) -> Structure:
        """Keep the globally highest-scoring channels such that MACs <= target * dense MACs.

        Scores must be comparable across groups (that is the method's job). Ties break by position, so
        the result is deterministic. The largest prefix of the global ranking that fits the budget is
        found by bisection; each group keeps at least its floor (:meth:`floors`: ``min_keep`` with
        ``min_channels``, everything for the groups in ``protect``) of its own best channels.
        """
        self._check_target(target)
        flat = torch.cat([scores[g.id].detach().float().reshape(-1).cpu() for g in self.groups])
        gid = torch.cat([torch.full((g.size,), i) for i, g in enumerate(self.groups)])
        order = torch.sort(-flat, stable=True).indices
        gid_sorted = gid[order].numpy()
        floor = self.floors(min_channels, protect)
        budget = target * self.dense_macs

        def counts(k: int) -> np.ndarray:
            return np.maximum(floor, np.bincount(gid_sorted[:k], minlength=len(self.groups)))

        lo, hi = 0, len(gid_sorted)
        if self.macs(counts(0)) > budget:
            raise ValueError(
                f"MACs target {target} is below what the per-group floor allows "
                f"({self.macs(counts(0)) / self.dense_macs:.3f}); raise the target or max_prune_frac"
            )
        while lo < hi:  # largest k with macs(counts(k)) <= budget
            mid = (lo + hi + 1) // 2
            if self.macs(counts(mid)) <= budget:
                lo = mid
            else:
                hi = mid - 1
        prefix = np.bincount(gid_sorted[:lo], minlength=len(self.groups)).astype(float)
        # The next channel in the ranking may be an expensive one (a wide residual stream in a small net
        # can cost >1% of the MACs alone); keep walking down the ranking and take every channel that still
        # fits, so the budget is met tightly without ever overshooting it.
        used = self.macs(np.maximum(floor, prefix))
        for gi in gid_sorted[lo:]:
            if budget - used <= 1e-3 * budget:
                break
            prefix[gi] += 1
            cost = self.macs(np.maximum(floor, prefix))
            if cost <= budget:
                used = cost
            else:
                prefix[gi] -= 1
        final = np.maximum(floor, prefix)
        return self._top_per_group(scores, final.astype(int))

    def select_uniform(self, scores: Mapping[str, torch.Tensor], target: float, *, min_channels: int = 1,
                       protect: Collection[str] = ()) -> Structure:
        """Prune every group by (nearly) the same ratio, chosen so that MACs <= target.

        Uniform up to one channel: after the common ratio is fixed by bisection, single channels are
        added (groups with the largest rounding remainder first) while the budget allows, so the target
        is met within 1% even when many groups of equal width would otherwise move in lock-step. The
        floors (``min_channels``, ``protect``) are the same as :meth:`select_global`'s.
        """
        self._check_target(target)
        sizes = self.sizes.astype(float)
        floor = self.floors(min_channels, protect)
        budget = target * self.dense_macs

        def counts(r: float) -> np.ndarray:
            return np.maximum(floor, np.floor(r * sizes))

        if self.macs(floor) > budget:
            raise ValueError(f"MACs target {target} is below what the per-group floor allows")
        lo, hi = 0.0, 1.0
        for _ in range(50):
            mid = (lo + hi) / 2
            if self.macs(counts(mid)) <= budget:
                lo = mid
            else:
                hi = mid
        c = counts(lo)
        remainder = lo * sizes - np.floor(lo * sizes)
        for i in np.argsort(-remainder, kind="stable"):
            if c[i] < sizes[i]:
                c[i] += 1
                if self.macs(c) > budget:
                    c[i] -= 1
        return self._top_per_group(scores, c.astype(int))

    def _top_per_group(self, scores: Mapping[str, torch.Tensor], counts: np.ndarray) -> Structure:
        out: Structure = {}
        for g, k in zip(self.groups, counts):
            s = scores[g.id].detach().float().reshape(-1).cpu()
            top = torch.sort(-s, stable=True).indices[: int(k)]
            out[g.id] = sorted(int(i) for i in top)
        return out

    @staticmethod
    def _check_target(target: float) -> None:
        if not 0.0 < target <= 1.0:
            raise ValueError(f"MACs target must be in (0, 1], got {target}")

    # ------------------------------------------------------------------ structures and masks
    def keep_counts(self, structure: Structure) -> dict[str, int]:
        return {g.id: len(structure.get(g.id, range(g.size))) for g in self.groups}

    def structure_macs_ratio(self, structure: Structure) -> float:
        return self.macs(self.keep_counts(structure)) / self.dense_macs

    def full_structure(self) -> Structure:
        return {g.id: list(range(g.size)) for g in self.groups}

    def masks_from_structure(self, structure: Structure, device: torch.device | str = "cpu",
                             dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        masks = {}
        for g in self.groups:
            m = torch.zeros(g.size, device=device, dtype=dtype)
            m[torch.as_tensor(structure.get(g.id, range(g.size)), dtype=torch.long)] = 1.0
            masks[g.id] = m
        return masks

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


class HookMasker(ABC):
    """Forward hooks that multiply channels by each group's current mask; subclasses say where.

    Masks may carry gradients (PASS's straight-through masks): the hooks read ``self.masks`` at every
    forward, so a search loop only swaps tensors. Use as a context manager to remove the hooks.
    """

    def __init__(self, space: PruningSpace, model: nn.Module | None = None) -> None:
        self.space = space
        self.model = model or space.model
        self.masks: dict[str, torch.Tensor] = {}
        self._hooks = self._install(dict(self.model.named_modules()))

    @abstractmethod
    def _install(self, modules: dict[str, nn.Module]) -> list:
        """Register the hooks (ChannelMasker: at the writers' norm outputs; passnet's ReaderMasker: at the
        readers' inputs) and return their handles."""

    def _scaled(self, gid: str, x: torch.Tensor) -> torch.Tensor | None:
        m = self.masks.get(gid)
        if m is None:
            return None
        return x * m.to(x.dtype).view((1, -1) + (1,) * (x.dim() - 2))

    def set(self, masks: Mapping[str, torch.Tensor]) -> None:
        self.masks = dict(masks)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class ChannelMasker(HookMasker):
    """Multiplies each group's output activations (after its norm layer) by its current mask."""

    def _install(self, modules: dict[str, nn.Module]) -> list:
        def hook_for(gid: str):
            def hook(_mod, _inp, out):
                scaled = self._scaled(gid, out)
                return out if scaled is None else scaled

            return hook

        return [modules[point].register_forward_hook(hook_for(g.id)) for g in self.space.groups for point in g.mask_at]


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


def count_macs_params(model: nn.Module, example_inputs: torch.Tensor) -> tuple[float, int]:
    """Torch-Pruning's MACs (conv, linear and norm layers) and parameter count."""
    was = model.training
    model.eval()
    macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    model.train(was)
    return float(macs), int(params)


def conv_linear_macs(model: nn.Module, example_inputs: torch.Tensor) -> float:
    """Conv+linear MACs measured by PyTorch's own FLOP counter (FLOPs / 2); the reference for our model."""
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(example_inputs)
    model.train(was)
    return fc.get_total_flops() / 2.0

