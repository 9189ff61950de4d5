"""Stage ``search``: one registered method answers "dense model + data + MACs target -> kept channels".

A sparsity-training method whose training is shared by every target (``passprune sparsify``) searches from that
training's weights (``--sparse DIR``): it only prunes, and reports the shared training's steps, images and seconds
as its own search cost (noted in ``info.sparsity_shared``), so each run's cost columns read as before."""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import example_input, load_dense
from ..files import atomic_torch_save, atomic_write_json, provenance, read_json
from .common import Job, drop_checkpoint, start_job

if TYPE_CHECKING:
    import torch.nn as nn

    from ..methods import MethodSpec, SearchContext, SearchResult
    from ..structure import PruningSpace

#: Cost keys every method reports in ``SearchResult.info``; search.json carries them at the top level too.
COST_KEYS = ("search_steps", "search_images", "weight_train_steps", "weight_train_images")


@dataclass(kw_only=True)
class SearchJob(Job):
    method: str  # the registered method that runs
    target: float  # fraction of dense MACs to keep
    dense: Path  # the dense model.pt
    label: str | None = None  # the name the run is reported under (a variant's label); default: ``method``
    source: str | None = None  # PASS hypernetwork.pt of a source task (hypernetwork transfer)
    reference: str | None = None  # structure.json whose widths a control reuses
    sparse: Path | None = None  # the shared sparsity training's folder (passprune sparsify): start from its weights

    def __post_init__(self) -> None:
        label = self.label or self.method
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", label):
            raise ValueError(f"--label {label!r}: use letters, digits and _ . + - only (it names a results folder)")
        self.label = label
        if not 0 < self.target <= 1:
            raise ValueError(f"--target {self.target}: the fraction of dense MACs to keep must be in (0, 1]")


def _reference(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"--reference {path}: no such file; pass the structure.json of the reference "
            "method's search (same dataset, arch, seed and target)"
        )
    return read_json(path)


def run_search(job: SearchJob) -> dict[str, Any]:
    """Run the method and write ``structure.json`` (the kept channels, data) and ``search.json`` (its cost).

    ``search_seconds`` is the method's own time (around the method call), not start-up, data or model loading,
    plus, for a search from a shared sparsity training (``--sparse``), that training's seconds; the whole job's
    time is ``job_seconds``. Steps and images come from the method's ``info`` (the shared training's, there).
    """
    from ..methods import get_method
    from ..tracking import JobRun

    t0, device, data = start_job(job)
    spec = get_method(job.method)
    options = spec.options(job.settings.method_options)
    if job.source:
        options["source"] = job.source
    reference = _reference(job.reference)
    shared = _shared(job, spec, options) if job.sparse else None
    model, dense_ck, space = dense_on_device(job, data, device, job.sparse / "model.pt" if shared else None)
    out = job.out
    out.mkdir(parents=True, exist_ok=True)
    tags = job.tags(method=job.label, base_method=job.method, target=job.target, family=spec.family)
    run_name = f"{job.dataset}/{job.arch}/seed{job.seed}/{job.label}/macs{job.target}/search"
    with JobRun(job.settings.tracking, run_name, tags, {"options": options, **job.raw}) as run:
        ctx = _context(job, model, space, data, device, options, reference, run)
        if shared is not None:
            ctx.sparsified = _replay(shared["info"], run)
        result, seconds, ratio = _search(spec, ctx, job)
        if shared is not None:  # the shared training's weights, which the method did not change: the same bytes
            seconds += _share(result, job.sparse, out / "search_model.pt")
        elif result.weights_changed:
            model_cpu = model.cpu().to(memory_format=torch.contiguous_format)
            atomic_torch_save({**dense_ck, "state_dict": model_cpu.state_dict()}, out / "search_model.pt")
        search = _search_record(job, spec.family, result, options, ratio, seconds)
        search["job_seconds"] = time.time() - t0
        _write_outputs(job, space, result, search)
        run.log_metrics(_run_metrics(search))
        run.log_outputs(out)  # the job's records, kept-ratio plot and log, to its MLflow run
    print(
        f"{job.label} ({job.method}) at {job.target}: {ratio:.4f} of dense MACs; search {seconds:.1f}s "
        f"(job {search['job_seconds']:.1f}s)"
    )
    return search


def dense_on_device(
    job: Job, data: Any, device: torch.device, path: Path | None = None
) -> tuple[nn.Module, dict, PruningSpace]:
    """The dense model (``job.dense``, or the sparsity-trained one at ``path``) and its pruning space, both on
    ``device`` (the methods' device contract).

    Why here: methods never move models (``passprune.methods.check_devices`` refuses a misplaced one), so
    the stage places the model and the space's example inputs on the job's device before the space traces
    them; a Torch-Pruning pruner a method builds then traces on one device. Returns (model, checkpoint, space).
    """
    from ..structure import PruningSpace

    model, dense_ck = load_dense(path or job.dense, device)
    x0 = example_input(data).to(device)
    space = PruningSpace(model, x0, max_prune_frac=job.settings.search.max_prune_frac)
    return model, dense_ck, space


def _shared(job: SearchJob, spec: MethodSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The shared sparsity training's record (``--sparse``), checked to be this search's method's training."""
    from .sparsify import read_shared

    if spec.sparsify is None or options["epochs"] <= 0:
        why = "its epochs is 0 (nothing to train)" if spec.sparsify else "it has no target-independent training"
        raise ValueError(
            f"--sparse {job.sparse}: {job.method} starts from no shared sparsity training ({why}); drop it"
        )
    want = {"method": job.method, "dataset": job.dataset, "arch": job.arch, "seed": job.seed}
    want |= {"batch_size": job.settings.search.batch_size, "options": spec.training_options(options)}
    return read_shared(job.sparse, want)


def _replay(info: dict[str, Any], run: Any) -> dict[str, Any]:
    """The shared training's per-epoch curves, logged to this search's run as the training itself logged them when
    it ran inside the search (``sparsity_*`` at each epoch); returns ``info`` for ``ctx.sparsified``."""
    for rec in info.get("sparsity_history") or []:
        run.log_metrics({f"sparsity_{k}": v for k, v in rec.items() if k != "epoch"}, rec["epoch"])
    return info


def _share(result: SearchResult, sparse: Path, dest: Path) -> float:
    """Note the shared training in the method's facts and give the search its weights (a hard link to the shared
    ``model.pt``, a copy across file systems; atomic). Returns the training's seconds, which the search's cost
    includes: each target's search reports the shared training as the single-job search reported its own."""
    result.info["sparsity_shared"] = str(sparse)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(sparse / "model.pt", tmp)
    except OSError:
        shutil.copyfile(sparse / "model.pt", tmp)
    os.replace(tmp, dest)
    return float(result.info["sparsity_seconds"])


def _context(
    job: SearchJob,
    model: nn.Module,
    space: PruningSpace,
    data: Any,
    device: torch.device,
    options: dict[str, Any],
    reference: dict[str, Any] | None,
    run: Any,
) -> SearchContext:
    """The method's view of the job: what it searches, with what, and where it may log and write."""
    from ..methods import SearchContext

    return SearchContext(
        model=model,
        space=space,
        data=data,
        target=job.target,
        options=options,
        device=device,
        seed=job.seed,
        workdir=job.out,
        batch_size=job.settings.search.batch_size,
        log=lambda m, step: run.log_metrics(m, step),
        reference=reference,
    )


def _search(spec: MethodSpec, ctx: SearchContext, job: SearchJob) -> tuple[SearchResult, float, float]:
    """Run the method (timed) and check its answer: a valid structure within 1% under the MACs target.

    Why the check is here rather than trusted to each method: every downstream stage and report assumes it,
    and a method that misses it is a bug that must stop the job. Returns (result, seconds, MACs ratio)."""
    t_search = time.time()
    result = spec.run(ctx)
    seconds = time.time() - t_search
    ctx.space.validate(result.structure)
    ratio = ctx.space.structure_macs_ratio(result.structure)
    if not (job.target * 0.99 <= ratio <= job.target * 1.0 + 1e-9):
        raise RuntimeError(
            f"{job.method} returned a structure at {ratio:.4f} of dense MACs; target {job.target} "
            "must be met within 1%: this is a bug in the method"
        )
    return result, seconds, ratio


def _search_record(
    job: SearchJob, family: str, result: SearchResult, options: dict[str, Any], ratio: float, seconds: float
) -> dict[str, Any]:
    """search.json (less ``job_seconds``): the cost columns every method reports, flat, and what ran.

    A method that did not train the weights reports no weight training; its fine-tuning then starts from the
    dense weights (or, for ``reinit``, a fresh initialisation), which ``weights`` records."""
    info = dict(result.info)
    costs = {k: info.get(k) for k in COST_KEYS}
    if not result.weights_changed:  # the fine-tuned weights are the dense ones (or a fresh init)
        costs.update({k: costs[k] or 0 for k in ("weight_train_steps", "weight_train_images")})
    weights = "scratch" if result.reinit else "search_model.pt" if result.weights_changed else "dense"
    return {
        "method": job.label,
        "base_method": job.method,
        "family": family,
        "target": job.target,
        "macs_ratio": ratio,
        "search_seconds": seconds,
        **costs,
        "weights": weights,
        "options": options,
        "reference": str(job.reference) if job.reference else None,
        "info": info,
        "settings": job.raw,
        "provenance": provenance(),
    }


def _write_outputs(job: SearchJob, space: PruningSpace, result: SearchResult, search: dict[str, Any]) -> None:
    """search.json, then structure.json (the output Snakemake waits for), then drop the resume checkpoints:
    they are only dead weight once the outputs exist."""
    out = job.out
    atomic_write_json(out / "search.json", search)
    structure = {
        "arch": job.arch,
        "dataset": job.dataset,
        "target": job.target,
        "method": job.label,
        "base_method": job.method,
        "group_sizes": {g.id: g.size for g in space.groups},
        "kept": result.structure,
    }
    atomic_write_json(out / "structure.json", structure)
    drop_checkpoint(job.settings, out / "sparsity_ckpt.pt")
    drop_checkpoint(job.settings, out / "search_ckpt.pt")  # PASS's resumable search state


def _run_metrics(search: dict[str, Any]) -> dict[str, float]:
    """The numbers of search.json that MLflow shows: times, MACs ratio, costs and the method's numeric facts."""
    costs = {k: search[k] for k in COST_KEYS}
    return {
        "search_seconds": search["search_seconds"],
        "job_seconds": search["job_seconds"],
        "macs_ratio": search["macs_ratio"],
        **{k: v for k, v in costs.items() if isinstance(v, (int, float))},
        **{k: v for k, v in search["info"].items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
    }
