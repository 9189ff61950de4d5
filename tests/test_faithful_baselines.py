"""The published baselines (``passprune.methods.faithful``) do what their papers describe, and every
sparsity regulariser (theirs and the Torch-Pruning-style ``*_tp`` ones) moves the weights it penalises.

* Regularisers: a short sparsity training on real Fashion-MNIST images, against a twin run that differs only
  in having no penalty; what the penalty targets must shrink relative to its twin clearly more than what it
  does not target.
* MACs: every faithful baseline meets the paper's extreme targets (0.25 and 0.7 of the dense MACs) within 1%
  on every registry architecture (one-shot: zero training steps; tests/test_methods.py runs them at 0.5 with
  training).
* Mechanics: Taylor's gate importance is Molchanov et al.'s (sum over the BN's gamma, beta of w * g)^2;
  DepGraph's zeroed channels give exactly the importances of the physically pruned network; slimming ranks
  raw |gamma| globally; l1 keeps the residual streams and prunes every other layer by the same ratio; GReg's
  to-prune set is fixed before training.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp
from conftest import small_model

from passprune.methods import SearchContext, SearchResult, get_method
from passprune.methods.faithful import coupled_groups, raw_filters, taylor_gate_importance, zero_channels
from passprune.models import list_models
from passprune.structure import PruningSpace, prune_model

FAITHFUL = ["l1", "fpgm", "taylor", "slimming", "greg", "depgraph"]
X = torch.zeros(1, 1, 28, 28)


def search(
    method: str, model: nn.Module, data, target: float, workdir: Path, seed: int = 0, batch_size: int = 32, **options
) -> tuple[PruningSpace, SearchResult]:
    spec = get_method(method)
    space = PruningSpace(model, X)
    ctx = SearchContext(
        model=model,
        space=space,
        data=data,
        target=target,
        options=spec.options(options),
        device=torch.device("cpu"),
        seed=seed,
        workdir=workdir,
        batch_size=batch_size,
    )
    return space, spec.fn(ctx)


# ----------------------------------------------------------------------------- regularisers move what they penalise
def _bn_gammas(model: nn.Module) -> float:
    return sum(m.weight.abs().sum().item() for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def _conv_weights(model: nn.Module) -> float:
    return sum(m.weight.abs().sum().item() for m in model.modules() if isinstance(m, nn.Conv2d))


def _weak_strong(initial: nn.Module) -> Callable[[nn.Module], tuple[float, float]]:
    """For group-norm regularisers: the summed group norm (Torch-Pruning's own measure, which those
    regularisers weight by) of the weakest and of the strongest quarter of each group's channels, the
    quarters chosen on the initial weights."""
    imp = tp.importance.GroupMagnitudeImportance(p=2, normalizer=None)
    space = PruningSpace(initial, X)
    quarters = {}
    for g in space.groups:
        order = torch.argsort(imp(g.tp_group).detach())
        q = max(1, g.size // 4)
        quarters[g.id] = (order[:q], order[-q:])

    def measure(model: nn.Module) -> tuple[float, float]:
        sp = PruningSpace(model, X)
        weak = strong = 0.0
        for g in sp.groups:
            s = imp(g.tp_group).detach()
            lo, hi = quarters[g.id]
            weak += s[lo].sum().item()
            strong += s[hi].sum().item()
        return weak, strong

    return measure


REGULARISED = {  # method: (options with the penalty, the twin's options without it)
    "slimming": (dict(reg=0.3), dict(reg=0.0)),
    "bn_scale_tp": (dict(reg=0.3), dict(reg=0.0)),
    "depgraph": (dict(reg=5e-2, steps=10), dict(reg=0.0, steps=10)),
    "depgraph_tp": (dict(reg=5e-2), dict(reg=0.0)),
    "greg": (dict(delta_reg=0.25, update_every=1, reg_ceiling=2.0), dict(delta_reg=1e-12, reg_ceiling=1e-12)),
    "greg_tp": (dict(reg=1e-2, delta_reg=0.5, update_every=1), dict(reg=0.0, delta_reg=0.0, update_every=1)),
}


@pytest.mark.parametrize("method", sorted(REGULARISED))
def test_regulariser_shrinks_what_it_penalises(method, fmnist_tiny, tmp_path):
    """12 steps at batch 8 (of 16 per epoch) on a half-width ResNet-20 (8-32 channels): what a penalty does to the
    weights does not depend on the network's width or the batch; the twin sees the same batches."""
    with_reg, without = REGULARISED[method]
    train = dict(epochs=1, max_steps_per_epoch=12, lr=0.05, batch_size=8)
    initial = small_model("resnet20", width=0.5).train()
    if method in ("slimming", "bn_scale_tp"):

        def measure(m):  # the BN scales are penalised; the conv filters are not
            return _bn_gammas(m), _conv_weights(m)
    elif method == "greg":
        l1_choice = search("l1", copy.deepcopy(initial), fmnist_tiny, 0.5, tmp_path / "l1")[1].structure

        def measure(m):  # the to-prune filters (fixed up front) are penalised; the kept ones are not
            sp = PruningSpace(m, X)
            pruned = kept = 0.0
            for g in sp.groups:
                w = raw_filters(sp, g).abs().sum(dim=1)
                mask = torch.zeros(g.size, dtype=torch.bool)
                mask[result_structure[g.id]] = True
                kept += w[mask].sum().item()
                pruned += w[~mask].sum().item()
            return pruned, kept
    else:
        measure = _weak_strong(copy.deepcopy(initial))

    runs = {}
    for label, opts in (("reg", with_reg), ("twin", without)):
        model = copy.deepcopy(initial)
        _, res = search(method, model, fmnist_tiny, 0.5, tmp_path / label, **train, **opts)
        assert res.weights_changed and res.info["weight_train_steps"] == 12
        if method == "greg":
            result_structure = res.structure
            if label == "reg":  # 0.25 per step reaches the ceiling 2.0 at step 7 of 12, then it is held
                assert res.info["greg_ceiling_step"] == 7 and res.info["greg_reached_ceiling"]
                assert res.info["greg_final_reg"] == 2.0
            # the to-prune set is Li et al.'s L1 choice on the weights before training (the target's per-layer ratio)
            assert res.structure == l1_choice
        runs[label] = measure(model)
    (pen_reg, rest_reg), (pen_twin, rest_twin) = runs["reg"], runs["twin"]
    penalised, rest = pen_reg / pen_twin, rest_reg / rest_twin
    print(f"{method}: penalised norms x{penalised:.3f} of the twin's, the rest x{rest:.3f}")
    assert penalised < 0.8, (method, penalised, rest)  # the penalised norms shrank by > 20% against the twin
    assert penalised < 0.85 * rest, (method, penalised, rest)  # and clearly more than what is not penalised


# ----------------------------------------------------------------------------- the MACs target on every architecture
ONE_SHOT = {
    "taylor": dict(batches=1),
    "slimming": dict(epochs=0),
    "greg": dict(epochs=0),
    "depgraph": dict(epochs=0, steps=30),
}


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("method", FAITHFUL)
def test_faithful_baseline_meets_target_on_every_arch(method, arch, fmnist_small, tmp_path):
    for target in (0.25, 0.7):
        space, res = search(
            method,
            small_model(arch),
            fmnist_small,
            target,
            tmp_path / str(target),
            batch_size=16,
            **ONE_SHOT.get(method, {}),
        )
        space.validate(res.structure)
        ratio = space.structure_macs_ratio(res.structure)
        assert target * 0.99 <= ratio <= target + 1e-12, (method, arch, target, ratio)
        assert all(isinstance(res.info.get(k), int) for k in ("search_steps", "weight_train_steps"))


@pytest.mark.parametrize("method", FAITHFUL)
def test_faithful_baseline_meets_target_on_the_embedded_default_model(method, fmnist_small, tmp_path):
    """The embedded default's half-width ResNet-20: with the residual streams kept whole, its prunable layers
    are 8-32 channels wide and one channel can be worth more than 1% of the MACs."""
    from passprune.models import build_model

    for target in (0.25, 0.3, 0.5, 0.7):
        torch.manual_seed(0)
        model = build_model("resnet20", num_classes=10, in_channels=1, width=0.5)
        space, res = search(
            method, model, fmnist_small, target, tmp_path / str(target), batch_size=16, **ONE_SHOT.get(method, {})
        )
        ratio = space.structure_macs_ratio(res.structure)
        assert target * 0.99 <= ratio <= target + 1e-12, (method, target, ratio)


# ----------------------------------------------------------------------------- what makes each one faithful
def test_taylor_gate_importance_is_molchanov_bn_taylor(fmnist_small, tmp_path):
    """One minibatch: the gate importance equals (sum over the group's BNs of gamma*dL/dgamma + beta*dL/dbeta)^2,
    the paper's Taylor-FO-BN, with BN in training mode; the model's BN statistics are left untouched."""
    model = small_model("resnet20")
    space = PruningSpace(model, X)
    ctx = SearchContext(
        model=model,
        space=space,
        data=fmnist_small,
        target=0.5,
        options={},
        device=torch.device("cpu"),
        seed=5,
        workdir=tmp_path,
        batch_size=32,
    )
    stats = {k: v.clone() for k, v in model.named_buffers()}
    scores, n, images = taylor_gate_importance(ctx, batches=1)
    assert (n, images) == (1, 32)
    assert all(torch.equal(v, stats[k]) for k, v in model.named_buffers())
    x, y = next(
        iter(
            fmnist_small.train.batches(
                32,
                shuffle=True,
                augment=False,
                generator=torch.Generator().manual_seed(5),
                device="cpu",
                drop_last=True,
            )
        )
    )
    model.train().zero_grad()
    F.cross_entropy(model(x), y).backward()
    mods = dict(model.named_modules())
    for g in space.groups:
        first_order = sum(mods[n].weight * mods[n].weight.grad + mods[n].bias * mods[n].bias.grad for n in g.norms)
        assert torch.allclose(scores[g.id], first_order.detach() ** 2, rtol=1e-3, atol=1e-12), g.id


def test_depgraph_zeroed_channels_match_the_physically_pruned_network():
    """Progressive pruning zeroes removed channels instead of deleting them; the group importances of what
    remains must equal Torch-Pruning's on the physically pruned network, in every group."""
    imp = tp.importance.GroupMagnitudeImportance(p=2, normalizer=None)
    model = small_model("resnet20")
    space = PruningSpace(model, X)
    structure = space.full_structure()
    for g in space.groups[1::3]:  # a few groups, residual streams included, lose their first third
        drop = list(range(g.size // 3))
        structure[g.id] = [i for i in range(g.size) if i not in drop]
        zero_channels(space, g, drop)
    pruned = prune_model(copy.deepcopy(small_model("resnet20")), X, structure)
    pspace = PruningSpace(pruned, X)
    assert [g.id for g in pspace.groups] == [g.id for g in space.groups]
    for g, pg in zip(space.groups, pspace.groups):
        zeroed = imp(g.tp_group).detach()[structure[g.id]]
        physical = imp(pg.tp_group).detach()
        assert torch.allclose(zeroed, physical, rtol=1e-5, atol=1e-8), g.id


def test_slimming_ranks_raw_gamma_globally(fmnist_small, tmp_path):
    """One global threshold on raw |gamma|: a layer whose scales are all tiny is cut to its floor, whatever
    its size (a per-group normalised ranking would prune it like any other)."""
    model = small_model("resnet56")
    space = PruningSpace(model, X)
    internal = [g for g in space.groups if g.id not in coupled_groups(space)]
    victim = internal[len(internal) // 2]
    with torch.no_grad():
        for n in victim.norms:
            dict(model.named_modules())[n].weight.mul_(1e-3)
    space, res = search("slimming", model, fmnist_small, 0.5, tmp_path, epochs=0)
    assert len(res.structure[victim.id]) == space.min_keep(victim)
    assert all(len(res.structure[g]) == space.by_id[g].size for g in coupled_groups(space))  # keep_coupled


def test_l1_keeps_residual_streams_and_prunes_layers_alike(fmnist_small, tmp_path):
    """Li et al.: the residual stream unpruned, every other layer pruned by the same ratio (up to a channel),
    keeping the filters with the largest raw L1 norm."""
    space, res = search("l1", small_model("resnet56"), fmnist_small, 0.5, tmp_path)
    coupled = set(coupled_groups(space))
    assert coupled and all(len(res.structure[g]) == space.by_id[g].size for g in coupled)
    inner = [g for g in space.groups if g.id not in coupled]
    ratios = [len(res.structure[g.id]) / g.size for g in inner]
    assert max(ratios) - min(ratios) <= 2.0 / min(g.size for g in inner) + 1e-9  # equal up to a channel or two
    for g in inner:
        l1 = raw_filters(space, g).abs().sum(dim=1)
        kept = set(res.structure[g.id])
        assert min(l1[i] for i in kept) >= max((l1[i] for i in range(g.size) if i not in kept), default=-1)
    _, free = search("l1", small_model("resnet56"), fmnist_small, 0.5, tmp_path, keep_coupled=False)
    assert any(len(free.structure[g]) < space.by_id[g].size for g in coupled)


def test_taylor_averages_over_more_minibatches_than_one_pass(fmnist_small, tmp_path):
    """The reference averages importance over hundreds of minibatches; a small training split is passed
    over again until ``batches`` minibatches were seen."""
    per_pass = len(fmnist_small.train) // 64
    _, res = search("taylor", small_model("resnet20"), fmnist_small, 0.5, tmp_path, batch_size=64, batches=per_pass + 3)
    assert res.info["taylor_batches"] == res.info["search_steps"] == per_pass + 3
    assert res.info["search_images"] == (per_pass + 3) * 64
