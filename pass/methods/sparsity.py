"""Torch-Pruning-style ``*_tp`` baselines that first *train* the dense model towards sparsity, then rank
channels in one shot: BN-scale L1 (``bn_scale_tp``), DepGraph's group-norm sparsity learning
(``depgraph_tp``) and Torch-Pruning's growing regularisation (``greg_tp``). The published methods
(network slimming, GReg-1, DepGraph with progressive pruning) are in ``faithful.py`` under the plain names.

The regularisers are Torch-Pruning's pruners' ``regularize`` (called after every backward pass of the
shared training loop); the ranking and the exact MACs budget are ours, shared with every method. Because
these methods change the dense weights, their search returns ``weights_changed=True`` and fine-tuning
starts from the sparsified weights, as in the original methods. The sparsity-training epochs are search
cost and are reported as such (fine-tuning gets the same budget as every other method): in ``info`` they
are both ``search_steps``/``search_images`` and ``weight_train_steps``/``weight_train_images``, the extra
training the fine-tuned weights already had.

None of the three regularisers reads the MACs target (GrowingRegPruner's penalty grows on each group's
low-norm channels, standardised within the group: no pruning ratio enters), so the training is registered as
each method's ``sparsify`` phase: the workflow runs it once per (dataset, arch, seed, method, training options)
(``passprune sparsify``) and every target's search starts from its weights, ranking and selecting only. A search
run on its own trains first, exactly as before (:func:`passprune.methods.sparsity_phase`); both paths give the
same weights and structures (``tests/test_shared_sparsity.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch_pruning as tp
from torch import nn

from ..engine import train
from ..settings import TrainSettings
from . import SearchContext, SearchResult, baseline, cost, sparsity_phase
from .importance import group_scores


def _sparsity_train(ctx: SearchContext, pruner, *, update_every: int = 0) -> dict:
    o = ctx.options
    cfg = TrainSettings(
        epochs=o["epochs"],
        batch_size=ctx.batch_size,
        lr=o["lr"],
        schedule="cosine",
        weight_decay=0.0 if o["no_weight_decay"] else 5e-4,
        label_smoothing=0.0,
        max_steps_per_epoch=o.get("max_steps_per_epoch"),
    )

    def after_backward(model, step):
        pruner.regularize(model)
        if update_every and step % update_every == 0:
            pruner.update_reg()  # GReg: the penalty grows on unimportant groups

    fp = repr((sorted(o.items()), ctx.target, ctx.seed, type(pruner).__name__))
    return run_sparsity_training(ctx, cfg, after_backward, "sparsity training", fp)


def run_sparsity_training(
    ctx: SearchContext,
    cfg: TrainSettings,
    after_backward: Callable[[nn.Module, int], None],
    desc: str,
    fingerprint: str,
) -> dict:
    """Train the dense weights with a regulariser applied after every backward pass (``after_backward``);
    resumable (``sparsity_ckpt.pt``). Returns the facts and the cost: the steps count as search *and* as
    weight training (the fine-tuned weights had them)."""
    t0 = time.time()
    res = train(
        ctx.model,
        ctx.data,
        cfg,
        device=ctx.device,
        seed=ctx.seed,
        after_backward=after_backward,
        checkpoint=ctx.workdir / "sparsity_ckpt.pt",
        desc=desc,
        fingerprint=fingerprint,
        on_epoch=lambda rec: ctx.log({f"sparsity_{k}": v for k, v in rec.items() if k != "epoch"}, rec["epoch"]),
    )
    return {
        "sparsity_epochs": cfg.epochs,
        "sparsity_seconds": time.time() - t0,
        "sparsity_val_top1": res.best_val_top1,
        "sparsity_history": res.history,  # the curves MLflow shows; track-verify checks them against this
        **cost(
            search_steps=res.steps,
            search_images=res.images,
            weight_train_steps=res.steps,
            weight_train_images=res.images,
        ),
    }


def _ignored(ctx: SearchContext):
    return [dict(ctx.model.named_modules())[ctx.space.classifier]]


def _sparsify(make_importance, pruner_cls) -> Callable[[SearchContext], dict]:
    """The training phase: Torch-Pruning's regulariser (the pruner class) during sparsity training, with the
    method's own penalty options (``reg``, and GReg's ``delta_reg``); a method with ``update_every`` has its
    growing penalty updated that often. Target-independent: the shared ``sparsify`` phase."""

    def sparsify(ctx: SearchContext) -> dict:
        penalty = {k: ctx.options[k] for k in ("reg", "delta_reg") if k in ctx.options}
        x = ctx.space.example_inputs
        pruner = pruner_cls(ctx.model, x, importance=make_importance(), ignored_layers=_ignored(ctx), **penalty)
        return _sparsity_train(ctx, pruner, update_every=ctx.options.get("update_every", 0))

    return sparsify


def _sparsity_method(make_importance, train: Callable[[SearchContext], dict]):
    """Sparsity training (``epochs`` > 0; shared, or run here: :func:`passprune.methods.sparsity_phase`), then the
    importance ranked globally."""

    def method(ctx: SearchContext) -> SearchResult:
        info = sparsity_phase(ctx, train)
        scores = group_scores(ctx, make_importance())
        select = ctx.space.select_global(scores, ctx.target)
        return SearchResult(select, info, weights_changed=ctx.options["epochs"] > 0)

    return method


_TRAINING = {"epochs": 1, "lr": 0.01, "no_weight_decay": False, "max_steps_per_epoch": None}
#: name -> (summary, importance, Torch-Pruning pruner class (its regulariser), option defaults)
_TP_SPARSITY = {
    "bn_scale_tp": (
        "Torch-Pruning style slimming: L1 on BN scales, group-normalised |gamma|, global ranking",
        tp.importance.BNScaleImportance,
        tp.pruner.BNScalePruner,
        {**_TRAINING, "reg": 1e-4},
    ),
    "greg_tp": (
        "Torch-Pruning GrowingRegPruner: an L2 penalty growing on low-norm channels, target-agnostic",
        lambda: tp.importance.GroupMagnitudeImportance(p=2),
        tp.pruner.GrowingRegPruner,
        {**_TRAINING, "reg": 1e-4, "delta_reg": 1e-4, "update_every": 10},
    ),
    "depgraph_tp": (
        "Torch-Pruning style DepGraph: group-norm sparsity learning, then one-shot group L2 ranking",
        lambda: tp.importance.GroupMagnitudeImportance(p=2),
        tp.pruner.GroupNormPruner,
        {**_TRAINING, "reg": 5e-4},
    ),
}
for _name, (_summary, _imp, _pruner, _defaults) in _TP_SPARSITY.items():
    _train = _sparsify(_imp, _pruner)
    # every option of these methods is a training option: the ranking reads none
    baseline(_name, _summary, trains_weights=True, sparsify=_train, sparsify_options=tuple(_defaults), **_defaults)(
        _sparsity_method(_imp, _train)
    )
