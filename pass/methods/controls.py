"""Controls that separate what a structure-search method contributes.

* ``random_widths``: random channels at a *reference* structure's per-group widths. Against the reference
  (e.g. PASS) it separates "how wide is each group" from "which channels of a group": same kept counts, so
  the same MACs, only the choice of channels inside each group is random.
* ``scratch`` (Liu et al. 2019, "Rethinking the value of network pruning"): the reference's structure,
  trained from a fresh random initialisation instead of inheriting the dense weights. The search only
  returns the structure and marks it ``reinit``; ``passprune finetune`` then builds the architecture anew
  with a seed-derived initialisation, prunes it to the structure and trains it with the same total budget
  the pruned-and-fine-tuned models' weights saw (the dense pretraining + the shared fine-tuning; see
  ``passprune.stages.finetune.run_finetune``).

Both read the reference from ``SearchContext.reference``: the parsed ``structure.json`` that
``passprune search --reference PATH`` names. Their option ``reference`` (default ``"pass"``) names the
method whose structure it is; the workflow resolves it to the path. The reference must be of the same
architecture (same dependency groups and sizes) and MACs target; its dataset may differ (transfer controls).
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from ..structure import Structure
from . import SearchContext, SearchResult, control, cost


def reference_structure(ctx: SearchContext, method: str) -> Structure:
    """The reference run's kept channels, checked against this search (same groups, sizes and target)."""
    ref: dict[str, Any] | None = ctx.reference
    want = ctx.options["reference"]
    if ref is None:
        raise ValueError(
            f"{method} needs a reference structure: pass `passprune search --reference PATH` with the "
            f"structure.json of a {want!r} search of the same architecture and MACs target (e.g. "
            f"results/<dataset>/<arch>/seed<seed>/{want}/macs<target>/search/structure.json)"
        )
    kept = ref.get("kept")
    if not isinstance(kept, dict):
        raise ValueError(f"{method}: the --reference file is not a structure.json (it has no 'kept' mapping)")
    ours = {g.id: g.size for g in ctx.space.groups}
    sizes = ref.get("group_sizes")  # absent in hand-made structures: then only the group ids are compared
    if set(kept) != set(ours) or (sizes is not None and {str(k): int(v) for k, v in sizes.items()} != ours):
        missing, extra = sorted(set(ours) - set(kept)), sorted(set(kept) - set(ours))
        raise ValueError(
            f"{method}: the --reference structure (arch {ref.get('arch')!r}) is for another architecture or "
            f"width than this model: its dependency groups differ (missing {missing[:3]}, unknown {extra[:3]}, "
            f"or different group sizes); pass the structure.json of a search on this --arch and model settings"
        )
    ref_method = ref.get("method")
    if ref_method is not None and want not in (ref_method, ref.get("base_method")):
        # Not an error: transfer controls hand over another method's structure (e.g. the source task's
        # pass_uniform) with the default option; what was used is recorded in the result's info.
        print(
            f"[{method}] note: option reference={want!r}, but the --reference structure comes from "
            f"{ref_method!r}; {ref_method!r} is what this run controls for",
            file=sys.stderr,
        )
    ref_target = ref.get("target")
    if ref_target is not None and abs(float(ref_target) - ctx.target) > 1e-9:
        raise ValueError(
            f"{method}: the --reference structure is at MACs target {ref_target}, this search at "
            f"{ctx.target}; pass the reference's structure.json at the same --target"
        )
    structure = {gid: sorted(int(i) for i in kept[gid]) for gid in ours}
    ctx.space.validate(structure)
    return structure


def _reference_info(ctx: SearchContext) -> dict[str, Any]:
    """What the reference was: its method label, registered method and dataset (transfer controls)."""
    ref = ctx.reference or {}
    return {
        "reference_method": ref.get("method"),
        "reference_base_method": ref.get("base_method", ref.get("method")),
        "reference_dataset": ref.get("dataset"),
    }


@control("random_widths", "random channels at a reference structure's per-group widths (how wide vs which channels)")
def random_widths_method(ctx: SearchContext) -> SearchResult:
    ref = reference_structure(ctx, "random_widths")
    gen = torch.Generator().manual_seed(ctx.seed)
    structure: Structure = {}
    for g in ctx.space.groups:  # a fixed group order, so one seed gives one structure
        k = len(ref[g.id])
        structure[g.id] = sorted(int(i) for i in torch.randperm(g.size, generator=gen)[:k])
    same = sum(structure[gid] == ref[gid] for gid in ref)
    return SearchResult(structure, {**cost(), **_reference_info(ctx), "groups_same_as_reference": int(same)})


@control(
    "scratch",
    "the reference structure trained from a fresh random init with the dense+finetune budget (Liu et al. 2019)",
    reinit=True,
)
def scratch_method(ctx: SearchContext) -> SearchResult:
    # Which indices are kept does not matter for a fresh initialisation; the reference's are as good as any.
    structure = reference_structure(ctx, "scratch")
    return SearchResult(structure, {**cost(), **_reference_info(ctx)}, reinit=True)
