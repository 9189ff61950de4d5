"""Stage ``search``: one registered method answers "dense model + data + MACs target -> kept channels"."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import example_input, load_dense
from ..files import atomic_torch_save, atomic_write_json, provenance, read_json
from .common import Job, drop_checkpoint, start_job

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

    ``search_seconds`` is the method's own time (around ``spec.fn``), not start-up, data or model loading;
    the whole job's time is ``job_seconds``. Steps and images come from the method's ``info``.
    """
    from ..methods import SearchContext, get_method
    from ..structure import PruningSpace
    from ..tracking import JobRun

    t0, device, data = start_job(job)
    spec = get_method(job.method)
    label = job.label
    options = spec.options(job.settings.method_options)
    if job.source:
        options["source"] = job.source
    reference = _reference(job.reference)
    model, dense_ck = load_dense(job.dense)
    sc = job.settings.search
    space = PruningSpace(model, example_input(data), max_prune_frac=sc.max_prune_frac)
    out = job.out
    out.mkdir(parents=True, exist_ok=True)
    tags = job.tags(method=label, base_method=job.method, target=job.target, family=spec.family)
    run_name = f"{job.dataset}/{job.arch}/seed{job.seed}/{label}/macs{job.target}/search"
    with JobRun(job.settings.tracking, run_name, tags, {"options": options, **job.raw}) as run:
        ctx = SearchContext(
            model=model,
            space=space,
            data=data,
            target=job.target,
            options=options,
            device=device,
            seed=job.seed,
            workdir=out,
            batch_size=sc.batch_size,
            log=lambda m, step: run.log_metrics(m, step),
            reference=reference,
        )
        t_search = time.time()
        result = spec.fn(ctx)
        seconds = time.time() - t_search
        space.validate(result.structure)
        ratio = space.structure_macs_ratio(result.structure)
        if not (job.target * 0.99 <= ratio <= job.target * 1.0 + 1e-9):
            raise RuntimeError(
                f"{job.method} returned a structure at {ratio:.4f} of dense MACs; target {job.target} "
                "must be met within 1%: this is a bug in the method"
            )
        if result.weights_changed:
            model_cpu = model.cpu().to(memory_format=torch.contiguous_format)
            atomic_torch_save({**dense_ck, "state_dict": model_cpu.state_dict()}, out / "search_model.pt")
        info = dict(result.info)
        costs = {k: info.get(k) for k in COST_KEYS}
        if not result.weights_changed:  # the fine-tuned weights are the dense ones (or a fresh init)
            costs.update({k: costs[k] or 0 for k in ("weight_train_steps", "weight_train_images")})
        weights = "scratch" if result.reinit else "search_model.pt" if result.weights_changed else "dense"
        search = {
            "method": label,
            "base_method": job.method,
            "family": spec.family,
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
        search["job_seconds"] = time.time() - t0
        atomic_write_json(out / "search.json", search)
        structure = {
            "arch": job.arch,
            "dataset": job.dataset,
            "target": job.target,
            "method": label,
            "base_method": job.method,
            "group_sizes": {g.id: g.size for g in space.groups},
            "kept": result.structure,
        }
        atomic_write_json(out / "structure.json", structure)
        drop_checkpoint(job.settings, out / "sparsity_ckpt.pt")
        drop_checkpoint(job.settings, out / "search_ckpt.pt")  # PASS's resumable search state
        run.log_metrics(
            {
                "search_seconds": seconds,
                "job_seconds": search["job_seconds"],
                "macs_ratio": ratio,
                **{k: v for k, v in costs.items() if isinstance(v, (int, float))},
                **{k: v for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            }
        )
        run.log_outputs(out)  # the job's records, kept-ratio plot and log, to its MLflow run
    print(
        f"{label} ({job.method}) at {job.target}: {ratio:.4f} of dense MACs; search {seconds:.1f}s "
        f"(job {search['job_seconds']:.1f}s)"
    )
    return search
