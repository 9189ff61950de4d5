"""Stage ``sparsify``: a sparsity-training baseline's training, once, shared by every MACs target's search.

Why its own job: slimming, DepGraph and the ``*_tp`` sparsity methods first train the dense model with a
sparsity regulariser, then prune to the target. The training never reads the target, so running it inside each
target's search repeated it once per target (four times in config/paper.yaml, about a quarter of the grid's
work). The workflow runs it once per (dataset, arch, seed, method, training options) -- the methods that register
a ``sparsify`` phase (:class:`passprune.methods.MethodSpec`) -- and each target's search starts from its weights
(``passprune search --sparse DIR``), ranking and selecting only. GReg-1 (``greg``) registers none: its penalty
grows on the filters chosen for removal at the target's ratio, so its training depends on the target.

What the job does is what the search job did before it trained, step for step (seed, data, dense model, pruning
space, the method's regulariser, the training loop with its per-epoch resume checkpoint ``sparsity_ckpt.pt``), so
the weights are the same bytes the single-job search trained (``tests/test_shared_sparsity.py``). It writes
``model.pt`` (the sparsity-trained weights, in the dense model's file format) and ``metrics.json`` (the
training's facts and cost, which every search that reads it reports as its own search cost), both atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_torch_save, atomic_write_json, provenance, read_json_checked
from .common import Job, drop_checkpoint, start_job

#: The record's keys a search checks against its own method, options and job before it uses the weights.
IDENTITY = ("method", "dataset", "arch", "seed", "batch_size", "options")


@dataclass(kw_only=True)
class SparsifyJob(Job):
    method: str  # a registered method with a shared sparsity training (its ``sparsify`` phase)
    dense: Path  # the dense model.pt it trains from


def run_sparsify(job: SparsifyJob) -> dict[str, Any]:
    """Train the dense model with the method's sparsity regulariser; write ``model.pt`` and ``metrics.json``."""
    from ..methods import SearchContext, get_method
    from .search import dense_on_device

    t0, device, data = start_job(job)
    spec = get_method(job.method)
    spec.shared_training()  # fails at once, saying why, for a method without one
    options = spec.training_options(job.settings.method_options)
    if options["epochs"] <= 0:
        raise ValueError(
            f"passprune sparsify --method {job.method}: its epochs is 0, nothing to train or share; its search "
            "starts from the dense model (passprune search without --sparse)"
        )
    model, dense_ck, space = dense_on_device(job, data, device)
    job.out.mkdir(parents=True, exist_ok=True)
    ctx = SearchContext(
        model=model,
        space=space,
        data=data,
        target=None,  # the shared training must not depend on it
        options=options,  # only the training's options: reading another is a KeyError, not a silent default
        device=device,
        seed=job.seed,
        workdir=job.out,
        batch_size=job.settings.search.batch_size,
    )
    info = spec.run_sparsify(ctx)
    model_cpu = model.cpu().to(memory_format=torch.contiguous_format)
    atomic_torch_save({**dense_ck, "state_dict": model_cpu.state_dict()}, job.out / "model.pt")
    record = _record(job, options, info, device)
    record["job_seconds"] = time.time() - t0
    atomic_write_json(job.out / "metrics.json", record)
    drop_checkpoint(job.settings, job.out / "sparsity_ckpt.pt")
    print(
        f"{job.method} sparsity training on {job.dataset}/{job.arch} seed {job.seed}: {info['search_steps']} steps, "
        f"{info['sparsity_seconds']:.1f}s (shared by every target's search)"
    )
    return record


def _record(job: SparsifyJob, options: dict[str, Any], info: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """metrics.json: who trained (the identity a search checks), the training's facts and cost, and provenance."""
    return {
        "stage": "sparsify",
        "method": job.method,
        "dataset": job.dataset,
        "arch": job.arch,
        "seed": job.seed,
        "batch_size": job.settings.search.batch_size,
        "options": options,
        "dense": str(job.dense),
        "device": str(device),
        "info": info,
        **{k: info[k] for k in ("search_steps", "search_images", "sparsity_seconds", "sparsity_val_top1")},
        "settings": job.raw,
        "provenance": provenance(),
    }


def read_shared(sparse: Path, want: dict[str, Any]) -> dict[str, Any]:
    """The record of a shared sparsity training (``sparse/metrics.json``), checked to be the training ``want``
    (:data:`IDENTITY`: method, dataset, arch, seed, search batch size, training options) describes."""
    rec = read_json_checked(sparse / "metrics.json", "shared sparsity training record", (*IDENTITY, "info"))
    diff = {k: rec.get(k) for k in IDENTITY if rec.get(k) != want[k]}
    if diff:
        raise ValueError(
            f"--sparse {sparse}: that sparsity training differs from this search's ({diff} there, "
            f"{ {k: want[k] for k in diff} } here); pass the folder of this method's own training "
            "(passprune sparsify with the same method, options, dataset, arch, seed and search batch size)"
        )
    return rec
