"""Stage ``finetune``: physical pruning, the shared fine-tuning budget, evaluation, cost and latency."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from ..checkpoint import build, example_input, load_dense, save_pruned
from ..files import provenance, read_json_checked
from ..records import write_record
from ..settings import TrainSettings
from .common import Job, drop_checkpoint, fingerprint, job_trainer, start_job
from .search import COST_KEYS

if TYPE_CHECKING:
    from ..engine import TrainResult
    from ..methods.passnet.prompted import FinetunePrompt
    from ..structure import ModelCost, PruningSpace


@dataclass(kw_only=True)
class FinetuneJob(Job):
    target: float
    dense: Path  # dense model.pt of this dataset
    search: Path  # search folder with structure.json and search.json
    label: str | None = None  # method name to report (transfer runs)
    source_dataset: str | None = None  # source task of a transferred structure
    structure_only: bool = False  # only the kept channels from --search, this dataset's dense weights


# ----------------------------------------------------------------------------- cost and the scratch control
def dense_metrics_of(dense_path: str | Path) -> dict[str, Any] | None:
    """The dense model's metrics.json (written next to its model.pt by ``pretrain``), or None."""
    path = Path(dense_path).with_name("metrics.json")
    return read_json_checked(path, "dense metrics") if path.is_file() else None


def pretrain_recipe(dense_metrics: dict[str, Any]) -> TrainSettings:
    """The dense model's own training recipe, from the settings its metrics.json recorded."""
    recipe = dict((dense_metrics.get("settings") or {}).get("train") or {})
    recipe.pop("bn_recalibration_batches", None)  # a fine-tuning option, never a pretraining one
    return TrainSettings.from_dict(recipe, "train (the dense model's recorded pretraining recipe)")


def dense_pretrain_steps(dense_metrics: dict[str, Any] | None) -> int | None:
    """Optimiser steps the dense model was trained for: epochs run (its history) x steps per epoch (its recipe
    and training-set size). None when the dense metrics are missing or incomplete."""
    from ..datasizes import steps_per_epoch

    if not dense_metrics:
        return None
    if isinstance(dense_metrics.get("train_steps"), int):
        return dense_metrics["train_steps"]
    n, history = dense_metrics.get("n_train"), dense_metrics.get("history")
    if n is None or history is None:
        return None
    cfg = pretrain_recipe(dense_metrics)
    return len(history) * steps_per_epoch(int(n), cfg.batch_size, cfg.max_steps_per_epoch) if cfg.epochs > 0 else 0


def scratch_init_seed(seed: int) -> int:
    """The fresh initialisation of ``scratch`` comes from a seed derived from the run's seed, and differs from
    the dense model's own initialisation (``torch.manual_seed(seed)``): re-using that one would be the
    lottery-ticket "original initialisation" experiment, not training from scratch."""
    return int(fingerprint("scratch-init", seed), 16) % (2**31 - 1)


def fresh_model(arch: str, model_kwargs: dict[str, Any], seed: int):
    """A freshly initialised dense architecture (seed-derived init), the global RNG left as it was."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(scratch_init_seed(seed))
        return build(arch, model_kwargs)
    finally:
        torch.random.set_rng_state(state)


def cost_columns(search: dict[str, Any], structure_only: bool, weight_train: tuple[int, int] | None) -> dict:
    """Flat cost columns of metrics.json from search.json (top-level keys, else the method's info)."""
    info = search.get("info") or {}
    cost = {k: search.get(k, info.get(k)) for k in COST_KEYS}
    if weight_train is not None:  # scratch: its own training before the shared fine-tuning
        cost["weight_train_steps"], cost["weight_train_images"] = weight_train
    elif search.get("weights", "dense") == "dense" or structure_only:  # fine-tuning starts from dense weights
        cost["weight_train_steps"] = cost["weight_train_images"] = 0
    return cost


def _read_search(search_dir: Path, arch: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """structure.json and search.json of a search folder, checked to belong to ``arch``."""
    structure = read_json_checked(search_dir / "structure.json", "structure", ("arch", "kept", "group_sizes"))
    search = read_json_checked(
        search_dir / "search.json", "search record", ("method", "family", "weights", "search_seconds")
    )
    if structure["arch"] != arch:
        raise ValueError(
            f"structure {search_dir / 'structure.json'} is for {structure['arch']}, not {arch}: a "
            "structure only applies to the architecture it was searched on"
        )
    return structure, search


def _check_fits(structure: dict[str, Any], space, path: Path, dense: Path) -> None:
    """A structure names channels of one network's dependency groups: it must be that network's (same groups,
    same channel counts; another width or a modified architecture would prune the wrong channels)."""
    sizes = {g.id: g.size for g in space.groups}
    if {str(k): int(v) for k, v in structure["group_sizes"].items()} != sizes:
        diff = (
            sorted(set(sizes) ^ set(structure["group_sizes"]))[:3]
            or [g for g in sizes if structure["group_sizes"].get(g) != sizes[g]][:3]
        )
        raise ValueError(
            f"structure {path} does not fit the dense model {dense}: their dependency groups differ "
            f"(e.g. {diff}); it was searched on another network (another width or dataset's "
            "input channels): rerun its search on this dense model"
        )
    space.validate(structure["kept"])


def run_finetune(job: FinetuneJob) -> dict[str, Any]:
    """Prune physically, fine-tune with the shared budget, evaluate; record the run's cost.

    Cost columns: ``search_*`` from search.json; ``weight_train_*`` the training the weights had before the
    shared fine-tuning (sparsity training; 0 when fine-tuning starts from the dense weights);
    ``finetune_*``; ``total_weight_steps`` = ``weight_train_steps`` + ``finetune_steps``.

    ``scratch`` (search.json ``weights: "scratch"``, Liu et al. 2019): the architecture is built afresh with
    a seed-derived initialisation (:func:`scratch_init_seed`), pruned to the structure, and trained with the
    same total budget the pruned-and-fine-tuned models' weights saw: first the dense model's own pretraining
    recipe (epochs, lr, schedule, augmentation from the dense metrics.json's ``settings.train``), then the
    shared fine-tuning. Two phases rather than one run with the epochs summed, because that reproduces what
    the inherited weights went through step for step (the pretraining's learning rate and schedule, then the
    fine-tuning's), even when the two recipes differ in batch size or schedule; the only differences left
    are the initialisation and the structure being fixed from the start. Its ``weight_train_*`` is the first
    phase, so ``total_weight_steps`` is all its training (= ``dense_pretrain_steps`` + ``finetune_steps``).
    Its ``top1_before_ft`` is the fresh initialisation's accuracy after the shared BN re-estimation: about
    chance, by construction. The dense model's own ImageNet pretraining (``pretrained: true``) is not
    counted in that budget.
    """
    from ..tracking import JobRun, finetune_run_name

    t0, device, data = start_job(job)
    s = _setup(job, data, device)
    cfg = job.settings.finetune.train()
    budget = job.settings.budget.name if job.settings.budget is not None else None
    tags = job.tags(method=s.method, target=job.target, family=s.family, source=job.source_dataset, budget=budget)
    run_name = finetune_run_name(job.dataset, job.arch, job.seed, s.method, job.target, budget)
    with JobRun(job.settings.tracking, run_name, tags, job.raw) as run:
        before = _before_finetune(job, s, data, device, cfg)
        pre, res = _train(job, s, run, data, device, cfg)
        test, test_np = _test(s, data, device, cfg)
        p_cpu, cost, dense_cost, latency = _measure(job, s, device)
        metrics = _metrics(job, s, device, before, test, res, (cost, dense_cost), latency)
        metrics.update(_budget_columns(job, s, res, pre))
        metrics.update(s.vp.metrics(test_np, before["test_np"]))
        _write_outputs(job, s, p_cpu, metrics, t0)
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        run.log_outputs(job.out)  # the job's records, kept-ratio plot and log, to its MLflow run
    print(
        f"{s.method} at {job.target} on {job.dataset}: top1 {before['test']['top1']:.2f}% -> {test['top1']:.2f}% "
        f"({metrics['speedup_macs']:.2f}x MACs)"
    )
    return metrics


@dataclass
class _Setup:
    """What a fine-tuning job works on, assembled before it logs anything: the search's records, the dense
    model, the weights fine-tuning starts from, and the pruned network (``net`` wraps it in PASS's prompt when
    the search asks for one, else it is ``pruned``)."""

    search_dir: Path
    structure: dict[str, Any]
    search: dict[str, Any]
    dense: nn.Module
    dense_ck: dict[str, Any]
    dense_metrics: dict[str, Any] | None
    scratch: bool
    start: nn.Module
    x0: torch.Tensor
    space: PruningSpace
    pruned: nn.Module
    vp: FinetunePrompt
    net: nn.Module
    method: str
    family: str

    @property
    def kept(self) -> dict[str, list[int]]:
        return self.structure["kept"]


def _setup(job: FinetuneJob, data: Any, device: torch.device) -> _Setup:
    """Read the search, load the dense model, pick the starting weights and prune them physically.

    The space and the pruning run on CPU copies (the dense model stays untouched for the cost counts and the
    latency baseline); only the pruned network goes to ``device``."""
    from ..methods.passnet.prompted import FinetunePrompt
    from ..structure import PruningSpace, prune_model

    search_dir = Path(job.search)
    structure, search = _read_search(search_dir, job.arch)
    dense, dense_ck = load_dense(job.dense)
    dense_metrics = dense_metrics_of(job.dense)
    scratch = search["weights"] == "scratch"
    start = _start_weights(job, search_dir, search, dense, dense_ck, dense_metrics)
    x0 = example_input(data)
    space = PruningSpace(copy.deepcopy(dense).cpu(), x0)
    _check_fits(structure, space, search_dir / "structure.json", job.dense)
    pruned = prune_model(copy.deepcopy(start).cpu().eval(), x0, structure["kept"]).to(device)
    vp = FinetunePrompt.from_search(search_dir, search, job.structure_only)  # PASS's prompt_at_eval (else inert)
    family = f"{search['family'].split('-')[0]}-transfer" if job.source_dataset else search["family"]
    return _Setup(
        search_dir,
        structure,
        search,
        dense,
        dense_ck,
        dense_metrics,
        scratch,
        start,
        x0,
        space,
        pruned,
        vp,
        net=vp.wrap(pruned),  # what is evaluated and fine-tuned: pruned(x + V) with prompt_at_eval, else pruned
        method=job.label or search["method"],
        family=family,
    )


def _start_weights(
    job: FinetuneJob,
    search_dir: Path,
    search: dict[str, Any],
    dense: nn.Module,
    dense_ck: dict[str, Any],
    dense_metrics: dict[str, Any] | None,
) -> nn.Module:
    """The weights fine-tuning starts from: a fresh initialisation (``scratch``), the search's sparsity-trained
    weights, or the dense model itself (returned as is, so callers can tell by identity)."""
    if search["weights"] == "scratch":
        if not dense_metrics or not (dense_metrics.get("settings") or {}).get("train"):
            raise FileNotFoundError(
                f"scratch needs the dense model's metrics.json next to --dense {job.dense} (its "
                "pretraining recipe settings.train and history set the training budget)"
            )
        return fresh_model(dense_ck["arch"], dense_ck["model_kwargs"], job.seed)
    if search["weights"] != "dense" and not job.structure_only:
        return load_dense(search_dir / search["weights"])[0]
    return dense


def _before_finetune(job: FinetuneJob, s: _Setup, data: Any, device: torch.device, cfg: TrainSettings) -> dict:
    """Accuracy of the pruned network before any training: validation as pruned, then after re-estimating
    its BatchNorm statistics (which every pruned net gets, so a method is not judged by stale statistics),
    then validation and test; PASS's prompt-free test accuracy beside it."""
    from ..engine import evaluate, recalibrate_bn

    raw_val = evaluate(s.net, data.val, device, cfg.eval_batch_size)
    recalibrate_bn(s.net, data.train, device, job.settings.finetune.bn_recalibration_batches, cfg.batch_size, job.seed)
    val = evaluate(s.net, data.val, device, cfg.eval_batch_size)
    test = evaluate(s.net, data.test, device, cfg.eval_batch_size)
    test_np = s.vp.noprompt(s.pruned, data.test, device, cfg.eval_batch_size, test)
    return {"raw_val": raw_val, "val": val, "test": test, "test_np": test_np}


def _train(
    job: FinetuneJob, s: _Setup, run: Any, data: Any, device: torch.device, cfg: TrainSettings
) -> tuple[TrainResult | None, TrainResult]:
    """``scratch``'s first phase (the dense model's own pretraining recipe, from the fresh init; None for every
    other method), then the shared fine-tuning. Returns (phase-1 result or None, fine-tuning result)."""
    fit = job_trainer(job, run, data, device)
    key = (job.dataset, job.arch, job.seed, job.raw, s.kept)
    pre = None
    if s.scratch:
        pre_cfg = pretrain_recipe(s.dense_metrics)
        pre = fit(
            s.pruned,
            pre_cfg,
            "scratch_ckpt.pt",
            log_prefix="scratch_",
            desc=f"scratch {s.method}@{job.target}",
            fingerprint=fingerprint("scratch", *key, pre_cfg, s.search["search_seconds"]),
        )
    res = fit(
        s.net,
        cfg,
        "finetune_ckpt.pt",
        **s.vp.train_kwargs(s.pruned),
        desc=f"finetune {s.method}@{job.target}",
        fingerprint=fingerprint(*key, s.search["search_seconds"]),
    )
    return pre, res


def _test(s: _Setup, data: Any, device: torch.device, cfg: TrainSettings) -> tuple[dict, Any]:
    """The fine-tuned network's test accuracy (the one time the test split decides anything), and without
    PASS's prompt."""
    from ..engine import evaluate

    test = evaluate(s.net, data.test, device, cfg.eval_batch_size)
    return test, s.vp.noprompt(s.pruned, data.test, device, cfg.eval_batch_size, test)


def _measure(job: FinetuneJob, s: _Setup, device: torch.device) -> tuple[nn.Module, ModelCost, ModelCost, dict]:
    """Cost of the pruned and the dense network (each counted once, both counters in one pass) and their
    latency, interleaved on ``device``. Returns (pruned net on CPU, its cost, the dense cost, latency)."""
    from ..metrics import interleaved_latency
    from ..structure import count_costs

    p_cpu = copy.deepcopy(s.pruned).cpu().to(memory_format=torch.contiguous_format).eval()
    d_cpu = copy.deepcopy(s.dense).cpu().eval()
    cost, dense_cost = count_costs(p_cpu, s.x0), count_costs(d_cpu, s.x0)
    lat = job.settings.latency
    latency = {}
    if lat.enabled:
        latency = interleaved_latency(
            d_cpu.to(device),
            p_cpu.to(device),
            tuple(s.x0.shape[1:]),
            device,
            batch_sizes=lat.batch_sizes,
            repeats=lat.repeats,
        )
        p_cpu = p_cpu.cpu()
    return p_cpu, cost, dense_cost, latency


def _metrics(
    job: FinetuneJob,
    s: _Setup,
    device: torch.device,
    before: dict[str, Any],
    test: dict[str, Any],
    res: TrainResult,
    costs: tuple[ModelCost, ModelCost],
    latency: dict[str, Any],
) -> dict[str, Any]:
    """metrics.json's accuracy, size and latency columns, the search's facts and the training history."""
    cost, dense = costs
    bs_main = max(job.settings.latency.batch_sizes) if latency else None
    return {
        "stage": "finetune",
        "dataset": job.dataset,
        "arch": job.arch,
        "seed": job.seed,
        "method": s.method,
        "family": s.family,
        "target": job.target,
        "source": job.source_dataset,
        "top1": test["top1"],
        "top1_before_ft": before["test"]["top1"],
        "val_top1": res.best_val_top1,
        "val_top1_before_ft": before["val"]["top1"],
        "val_top1_before_ft_no_recal": before["raw_val"]["top1"],
        "bn_recalibration_batches": job.settings.finetune.bn_recalibration_batches,
        "best_epoch": res.best_epoch,
        "macs": cost.macs,
        "dense_macs": dense.macs,
        "macs_ratio": cost.macs / dense.macs,
        "speedup_macs": dense.macs / cost.macs,
        "macs_tp": cost.macs_tp,
        "params": cost.params,
        "dense_params": dense.params,
        "dense_macs_tp": dense.macs_tp,
        "speedup_latency": latency.get(f"speedup_latency_bs{bs_main}") if latency else None,
        **latency,
        "device": str(device),
        "search_seconds": s.search["search_seconds"],
        "finetune_seconds": res.seconds,
        "search_info": {k: v for k, v in s.search.get("info", {}).items() if k != "history"},
        "kept_channels": {g: len(v) for g, v in s.kept.items()},
        "group_sizes": s.structure["group_sizes"],
        "group_order": [g.id for g in s.space.groups],
        "history": res.history,
        "settings": job.raw,
        "provenance": provenance(),
    }


def _budget_columns(job: FinetuneJob, s: _Setup, res: TrainResult, pre: TrainResult | None) -> dict[str, Any]:
    """The training budget every weight saw (search, weight training, fine-tuning) and where it started;
    for ``scratch`` also its first phase, so its total can be checked against the dense pretraining."""
    search = s.search
    costs = cost_columns(search, job.structure_only, (pre.steps, pre.images) if pre is not None else None)
    wts = costs["weight_train_steps"]
    columns = {
        "base_method": search.get("base_method", search["method"]),
        "method_options": search.get("options"),
        "select_on_val": (search.get("options") or {}).get("select_on_val"),
        "search_job_seconds": search.get("job_seconds"),
        **costs,
        "finetune_steps": res.steps,
        "finetune_images": res.images,
        "total_weight_steps": wts + res.steps if wts is not None else None,
        "dense_pretrain_steps": dense_pretrain_steps(s.dense_metrics),
        "start_weights": "scratch" if s.scratch else "dense" if s.start is s.dense else "search",
    }
    if pre is not None:
        columns.update(
            {
                "scratch_init_seed": scratch_init_seed(job.seed),
                "scratch_history": pre.history,
                "scratch_val_top1": pre.best_val_top1,
            }
        )
    return columns


def _write_outputs(job: FinetuneJob, s: _Setup, p_cpu: nn.Module, metrics: dict[str, Any], t0: float) -> None:
    """The prompt (PASS), the pruned model, then metrics.json (what Snakemake waits for, with the job's wall
    time), then drop the resume checkpoints: dead weight once the outputs exist."""
    out = job.out
    s.vp.save(out)
    save_pruned(out / "model.pt", job.arch, s.dense_ck["model_kwargs"], s.kept, p_cpu, list(s.x0.shape))
    metrics["wall_seconds"] = time.time() - t0
    write_record(out / "metrics.json", metrics)
    drop_checkpoint(job.settings, out / "finetune_ckpt.pt")
    drop_checkpoint(job.settings, out / "scratch_ckpt.pt")
