"""``passprune <stage>``: the one entry point every Snakemake rule calls.

Stages: ``pretrain`` (dense model), ``search`` (a method's kept channels at a MACs target), ``finetune``
(physical pruning, fine-tuning, evaluation), ``aggregate`` (summary.csv from metrics.json files),
``report`` (tables and figures), ``track-init`` (MLflow store + study run, once before jobs fan out).
Each stage takes its resolved settings as JSON (``--settings``), so Snakemake reruns a job when the
settings that job depends on change, and writes its outputs atomically.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .files import atomic_torch_save, atomic_write_json, provenance, read_json

DEFAULT_DATA_ROOT = "data"


# ----------------------------------------------------------------------------- shared helpers
def _settings(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        return read_json(text[1:])
    try:
        return json.loads(text) if text else {}
    except json.JSONDecodeError as err:
        raise SystemExit(f"--settings is not valid JSON ({err}); pass a JSON object or @file.json") from None


def _setup(settings: dict, seed: int) -> torch.device:
    from .devices import resolve_device

    threads = settings.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    return resolve_device(settings.get("device", "auto"))


#: How the workflow hands a job its MLflow settings: not in --settings, because a change of tracking store or
#: study must not make Snakemake rerun (and a dense model shared by two studies must not look changed).
TRACKING_ENV = "PASSPRUNE_TRACKING"


def _start(a: argparse.Namespace):
    """Every job stage begins alike: its settings, a start time, the device and the data."""
    import os

    s = _settings(a.settings)
    if getattr(a, "threads", None):
        s["threads"] = a.threads
    if "tracking" not in s and os.environ.get(TRACKING_ENV):
        s["tracking"] = json.loads(os.environ[TRACKING_ENV])
    t0 = time.time()
    device = _setup(s, a.seed)
    return s, t0, device, _data(s, a.dataset, a.seed)


def _data(settings: dict, dataset: str, seed: int):
    from .data import load_dataset

    d = settings.get("data", {})
    return load_dataset(dataset, d.get("root", DEFAULT_DATA_ROOT), seed=seed, val_size=d.get("val_size", 0.1),
                        train_subset=d.get("train_subset"), test_subset=d.get("test_subset"),
                        image_size=d.get("image_size"), num_workers=d.get("num_workers", 0))


def _model_kwargs(settings: dict, data) -> dict[str, Any]:
    m = settings.get("model", {})
    kw = {"num_classes": data.num_classes, "in_channels": data.in_channels, "width": m.get("width", 1.0)}
    kw.update(m.get("kwargs", {}))
    return kw


def build(arch: str, kwargs: dict[str, Any], pretrained: bool = False, weights_dir: str | None = None):
    from .models import build_model

    return build_model(arch, pretrained=pretrained, weights_dir=weights_dir, **kwargs)


def example_input(data) -> torch.Tensor:
    return torch.zeros(1, data.in_channels, data.image_size, data.image_size)


def load_dense(path: str | Path, device: torch.device = torch.device("cpu")):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = build(ck["arch"], ck["model_kwargs"])
    model.load_state_dict(ck["state_dict"])
    return model.to(device), ck


def load_pruned(path: str | Path):
    """Rebuild a pruned network from data: dense architecture + kept channels + weights (no pickle)."""
    from .structure import prune_model

    ck = torch.load(path, map_location="cpu", weights_only=False)
    model = build(ck["arch"], ck["model_kwargs"])
    prune_model(model, torch.zeros(ck["input_shape"]), ck["structure"])
    model.load_state_dict(ck["state_dict"])
    return model, ck


def fingerprint(*parts: Any) -> str:
    """Digest of what a training run depends on (settings, structure, starting weights' file)."""
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _drop_checkpoint(settings: dict, path: Path) -> None:
    """A finished job's resume checkpoint is dead weight (a full model + optimizer state): remove it once the
    job's real outputs are written, unless ``keep_checkpoints`` is set."""
    if not settings.get("keep_checkpoints", False):
        path.unlink(missing_ok=True)


def _job_tags(a: argparse.Namespace, stage: str, **extra: Any) -> dict[str, Any]:
    tags = {"stage": stage, "dataset": a.dataset, "arch": a.arch, "seed": a.seed}
    tags.update({k: v for k, v in extra.items() if v is not None})
    return tags


# ----------------------------------------------------------------------------- stages
def cmd_pretrain(a: argparse.Namespace) -> None:
    from .engine import TrainConfig, evaluate, train
    from .structure import count_macs_params, conv_linear_macs
    from .tracking import JobRun

    s, t0, device, data = _start(a)
    kw = _model_kwargs(s, data)
    m = s.get("model", {})
    model = build(a.arch, kw, pretrained=m.get("pretrained", False), weights_dir=m.get("weights_dir"))
    cfg = TrainConfig.from_dict(s.get("train"))
    out = Path(a.out)
    tags = _job_tags(a, "pretrain", method="dense")
    with JobRun(s.get("tracking"), f"{a.dataset}/{a.arch}/seed{a.seed}/dense", tags, s) as run:
        res = train(model, data, cfg, device=device, seed=a.seed, checkpoint=out / "train_ckpt.pt",
                    on_epoch=lambda r: run.log_metrics(r, r["epoch"]), desc=f"pretrain {a.arch}",
                    fingerprint=fingerprint(a.dataset, a.arch, a.seed, s))
        test = evaluate(model, data.test, device, cfg.eval_batch_size)
        cpu = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)
        macs_tp, params = count_macs_params(cpu, example_input(data))
        metrics = {
            "stage": "pretrain", "dataset": a.dataset, "arch": a.arch, "seed": a.seed, "method": "dense",
            "family": "dense", "target": 1.0, "top1": test["top1"], "top1_before_ft": test["top1"],
            "val_top1": res.best_val_top1, "best_epoch": res.best_epoch, "macs": conv_linear_macs(cpu, example_input(data)),
            "macs_tp": macs_tp, "params": params, "train_seconds": res.seconds, "history": res.history,
            "n_train": len(data.train), "n_val": len(data.val), "n_test": len(data.test),
            "settings": s, "provenance": provenance(),
        }
        atomic_torch_save({"arch": a.arch, "model_kwargs": kw, "state_dict": cpu.state_dict(),
                           "input_shape": list(example_input(data).shape)}, out / "model.pt")
        metrics["wall_seconds"] = time.time() - t0
        atomic_write_json(out / "metrics.json", metrics)
        _drop_checkpoint(s, out / "train_ckpt.pt")
        run.log_metrics({k: metrics[k] for k in ("top1", "val_top1", "macs", "params", "train_seconds")})
    print(f"dense {a.arch} on {a.dataset}: test top1 {test['top1']:.2f}% (val {res.best_val_top1:.2f}%)")


#: Cost keys every method reports in ``SearchResult.info``; search.json carries them at the top level too.
COST_KEYS = ("search_steps", "search_images", "weight_train_steps", "weight_train_images")


def _label(a: argparse.Namespace) -> str:
    import re

    label = a.label or a.method
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", label):
        raise ValueError(f"--label {label!r}: use letters, digits and _ . + - only (it names a results folder)")
    return label


def _reference(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"--reference {path}: no such file; pass the structure.json of the reference "
                                "method's search (same dataset, arch, seed and target)")
    return read_json(path)


def cmd_search(a: argparse.Namespace) -> None:
    """Run one registered method (``--method``) and report it under ``--label`` (default: the method).

    ``search_seconds`` is the method's own time (around ``spec.fn``), not start-up, data or model loading;
    the whole job's time is ``job_seconds``. Steps and images come from the method's ``info``.
    """
    from .methods import SearchContext, get_method
    from .structure import PruningSpace
    from .tracking import JobRun

    s, t0, device, data = _start(a)
    spec = get_method(a.method)
    label = _label(a)
    options = spec.options(s.get("method_options"))
    if a.source:
        options["source"] = a.source
    reference = _reference(a.reference)
    model, dense_ck = load_dense(a.dense)
    sc = s.get("search", {})
    space = PruningSpace(model, example_input(data), max_prune_frac=sc.get("max_prune_frac", 0.9))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    tags = _job_tags(a, "search", method=label, base_method=a.method, target=a.target, family=spec.family)
    with JobRun(s.get("tracking"), f"{a.dataset}/{a.arch}/seed{a.seed}/{label}/macs{a.target}/search", tags,
                {"options": options, **s}) as run:
        ctx = SearchContext(model=model, space=space, data=data, target=a.target, options=options, device=device,
                            seed=a.seed, workdir=out, batch_size=sc.get("batch_size", 128),
                            log=lambda m, step: run.log_metrics(m, step), reference=reference)
        t_search = time.time()
        result = spec.fn(ctx)
        seconds = time.time() - t_search
        space.validate(result.structure)
        ratio = space.structure_macs_ratio(result.structure)
        if not (a.target * 0.99 <= ratio <= a.target * 1.0 + 1e-9):
            raise RuntimeError(f"{a.method} returned a structure at {ratio:.4f} of dense MACs; target {a.target} "
                               "must be met within 1%: this is a bug in the method")
        if result.weights_changed:
            model_cpu = model.cpu().to(memory_format=torch.contiguous_format)
            atomic_torch_save({**dense_ck, "state_dict": model_cpu.state_dict()}, out / "search_model.pt")
        info = dict(result.info)
        costs = {k: info.get(k) for k in COST_KEYS}
        if not result.weights_changed:  # the fine-tuned weights are the dense ones (or a fresh init)
            costs.update({k: costs[k] or 0 for k in ("weight_train_steps", "weight_train_images")})
        weights = "scratch" if result.reinit else "search_model.pt" if result.weights_changed else "dense"
        search = {"method": label, "base_method": a.method, "family": spec.family, "target": a.target,
                  "macs_ratio": ratio, "search_seconds": seconds, **costs, "weights": weights, "options": options,
                  "reference": str(a.reference) if a.reference else None, "info": info,
                  "provenance": provenance()}
        search["job_seconds"] = time.time() - t0
        atomic_write_json(out / "search.json", search)
        structure = {"arch": a.arch, "dataset": a.dataset, "target": a.target, "method": label,
                     "base_method": a.method, "group_sizes": {g.id: g.size for g in space.groups},
                     "kept": result.structure}
        atomic_write_json(out / "structure.json", structure)
        _drop_checkpoint(s, out / "sparsity_ckpt.pt")
        _drop_checkpoint(s, out / "search_ckpt.pt")  # PASS's resumable search state
        run.log_metrics({"search_seconds": seconds, "job_seconds": search["job_seconds"], "macs_ratio": ratio,
                         **{k: v for k, v in costs.items() if isinstance(v, (int, float))},
                         **{k: v for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}})
        run.log_artifact(out / "structure.json")
    print(f"{label} ({a.method}) at {a.target}: {ratio:.4f} of dense MACs; search {seconds:.1f}s "
          f"(job {search['job_seconds']:.1f}s)")


# ----------------------------------------------------------------------------- fine-tuning: cost and scratch
def _dense_metrics(dense_path: str | Path) -> dict[str, Any] | None:
    """The dense model's metrics.json (written next to its model.pt by ``pretrain``), or None."""
    path = Path(dense_path).with_name("metrics.json")
    return read_json(path) if path.is_file() else None


def _pretrain_recipe(dense_metrics: dict[str, Any]) -> dict[str, Any]:
    recipe = dict((dense_metrics.get("settings") or {}).get("train") or {})
    recipe.pop("bn_recalibration_batches", None)  # a fine-tuning option, never a pretraining one
    return recipe


def _dense_pretrain_steps(dense_metrics: dict[str, Any] | None) -> int | None:
    """Optimiser steps the dense model was trained for: epochs run (its history) x steps per epoch (its recipe
    and training-set size). None when the dense metrics are missing or incomplete."""
    from .engine import TrainConfig, _steps_per_epoch

    if not dense_metrics:
        return None
    if isinstance(dense_metrics.get("train_steps"), int):
        return dense_metrics["train_steps"]
    n, history = dense_metrics.get("n_train"), dense_metrics.get("history")
    if n is None or history is None:
        return None
    cfg = TrainConfig.from_dict(_pretrain_recipe(dense_metrics))
    return len(history) * _steps_per_epoch(int(n), cfg) if cfg.epochs > 0 else 0


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


def _cost_columns(search: dict[str, Any], structure_only: bool, weight_train: tuple[int, int] | None) -> dict:
    """Flat cost columns of metrics.json from search.json (top-level keys, else the method's info)."""
    info = search.get("info") or {}
    cost = {k: search.get(k, info.get(k)) for k in COST_KEYS}
    if weight_train is not None:  # scratch: its own training before the shared fine-tuning
        cost["weight_train_steps"], cost["weight_train_images"] = weight_train
    elif search.get("weights", "dense") == "dense" or structure_only:  # fine-tuning starts from dense weights
        cost["weight_train_steps"] = cost["weight_train_images"] = 0
    return cost


def cmd_finetune(a: argparse.Namespace) -> None:
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
    from .engine import TrainConfig, evaluate, recalibrate_bn, train
    from .methods.passnet.prompted import FinetunePrompt
    from .metrics import interleaved_latency
    from .structure import PruningSpace, conv_linear_macs, count_macs_params, prune_model
    from .tracking import JobRun

    s, t0, device, data = _start(a)
    search_dir = Path(a.search)
    structure = read_json(search_dir / "structure.json")
    search = read_json(search_dir / "search.json")
    if structure["arch"] != a.arch:
        raise SystemExit(f"structure {search_dir} is for {structure['arch']}, not {a.arch}")
    dense, dense_ck = load_dense(a.dense)
    dense_metrics = _dense_metrics(a.dense)
    scratch = search["weights"] == "scratch"
    start = dense
    if scratch:
        if not dense_metrics or not (dense_metrics.get("settings") or {}).get("train"):
            raise FileNotFoundError(f"scratch needs the dense model's metrics.json next to --dense {a.dense} (its "
                                    "pretraining recipe settings.train and history set the training budget)")
        start = fresh_model(dense_ck["arch"], dense_ck["model_kwargs"], a.seed)
    elif search["weights"] != "dense" and not a.structure_only:
        start, _ = load_dense(search_dir / search["weights"])
    x0 = example_input(data)
    kept = structure["kept"]
    pruned = prune_model(copy.deepcopy(start).cpu().eval(), x0, kept).to(device)
    vp = FinetunePrompt.from_search(search_dir, search, a.structure_only)  # PASS's prompt_at_eval (else inert)
    net = vp.wrap(pruned)  # what is evaluated and fine-tuned: pruned(x + V) with prompt_at_eval, else pruned
    space = PruningSpace(copy.deepcopy(dense).cpu(), x0)
    ft = dict(s.get("train") or {})
    recal = ft.pop("bn_recalibration_batches", 20)
    cfg = TrainConfig.from_dict(ft)
    method = a.label or search["method"]
    family = f"{search['family'].split('-')[0]}-transfer" if a.source_dataset else search["family"]
    out = Path(a.out)
    tags = _job_tags(a, "finetune", method=method, target=a.target, family=family, source=a.source_dataset)
    with JobRun(s.get("tracking"), f"{a.dataset}/{a.arch}/seed{a.seed}/{method}/macs{a.target}", tags, s) as run:
        raw_val = evaluate(net, data.val, device, cfg.eval_batch_size)
        recalibrate_bn(net, data.train, device, recal, cfg.batch_size, a.seed)
        before_val = evaluate(net, data.val, device, cfg.eval_batch_size)
        before_test = evaluate(net, data.test, device, cfg.eval_batch_size)
        before_test_np = vp.noprompt(pruned, data.test, device, cfg.eval_batch_size, before_test)
        pre = None
        if scratch:  # phase 1: the dense model's pretraining recipe, from the fresh init; phase 2 is below
            pre_cfg = TrainConfig.from_dict(_pretrain_recipe(dense_metrics))
            pre = train(pruned, data, pre_cfg, device=device, seed=a.seed, checkpoint=out / "scratch_ckpt.pt",
                        on_epoch=lambda r: run.log_metrics({f"scratch_{k}": v for k, v in r.items() if k != "epoch"},
                                                           r["epoch"]),
                        desc=f"scratch {method}@{a.target}",
                        fingerprint=fingerprint("scratch", a.dataset, a.arch, a.seed, s, kept, pre_cfg,
                                                search["search_seconds"]))
        res = train(net, data, cfg, device=device, seed=a.seed, checkpoint=out / "finetune_ckpt.pt",
                    **vp.train_kwargs(pruned),
                    on_epoch=lambda r: run.log_metrics(r, r["epoch"]), desc=f"finetune {method}@{a.target}",
                    fingerprint=fingerprint(a.dataset, a.arch, a.seed, s, kept, search["search_seconds"]))
        test = evaluate(net, data.test, device, cfg.eval_batch_size)
        test_np = vp.noprompt(pruned, data.test, device, cfg.eval_batch_size, test)
        p_cpu = copy.deepcopy(pruned).cpu().to(memory_format=torch.contiguous_format).eval()
        d_cpu = copy.deepcopy(dense).cpu().eval()
        macs = conv_linear_macs(p_cpu, x0)
        dense_macs = conv_linear_macs(d_cpu, x0)
        macs_tp, params = count_macs_params(p_cpu, x0)
        dense_macs_tp, dense_params = count_macs_params(d_cpu, x0)
        lat = s.get("latency", {})
        latency = {}
        if lat.get("enabled", True):
            latency = interleaved_latency(d_cpu.to(device), p_cpu.to(device), tuple(x0.shape[1:]), device,
                                          batch_sizes=tuple(lat.get("batch_sizes", [1, 64])),
                                          repeats=lat.get("repeats", 20))
            p_cpu, d_cpu = p_cpu.cpu(), d_cpu.cpu()
        bs_main = max(lat.get("batch_sizes", [1, 64])) if latency else None
        metrics = {
            "stage": "finetune", "dataset": a.dataset, "arch": a.arch, "seed": a.seed, "method": method,
            "family": family, "target": a.target, "source": a.source_dataset,
            "top1": test["top1"], "top1_before_ft": before_test["top1"], "val_top1": res.best_val_top1,
            "val_top1_before_ft": before_val["top1"], "val_top1_before_ft_no_recal": raw_val["top1"],
            "bn_recalibration_batches": recal, "best_epoch": res.best_epoch,
            "macs": macs, "dense_macs": dense_macs, "macs_ratio": macs / dense_macs, "speedup_macs": dense_macs / macs,
            "macs_tp": macs_tp, "params": params, "dense_params": dense_params, "dense_macs_tp": dense_macs_tp,
            "speedup_latency": latency.get(f"speedup_latency_bs{bs_main}") if latency else None,
            **latency, "device": str(device),
            "search_seconds": search["search_seconds"], "finetune_seconds": res.seconds,
            "search_info": {k: v for k, v in search.get("info", {}).items() if k != "history"},
            "kept_channels": {g: len(v) for g, v in kept.items()}, "group_sizes": structure["group_sizes"],
            "group_order": [g.id for g in space.groups], "history": res.history,
            "settings": s, "provenance": provenance(),
        }
        costs = _cost_columns(search, a.structure_only, (pre.steps, pre.images) if pre is not None else None)
        wts = costs["weight_train_steps"]
        metrics.update({
            "base_method": search.get("base_method", search["method"]), "method_options": search.get("options"),
            "select_on_val": (search.get("options") or {}).get("select_on_val"),
            "search_job_seconds": search.get("job_seconds"), **costs,
            "finetune_steps": res.steps, "finetune_images": res.images,
            "total_weight_steps": wts + res.steps if wts is not None else None,
            "dense_pretrain_steps": _dense_pretrain_steps(dense_metrics),
            "start_weights": "scratch" if scratch else "dense" if start is dense else "search",
        })
        if pre is not None:
            metrics.update({"scratch_init_seed": scratch_init_seed(a.seed), "scratch_history": pre.history,
                            "scratch_val_top1": pre.best_val_top1})
        metrics.update(vp.metrics(test_np, before_test_np))
        vp.save(out)
        atomic_torch_save({"arch": a.arch, "model_kwargs": dense_ck["model_kwargs"], "structure": kept,
                           "state_dict": p_cpu.state_dict(), "input_shape": list(x0.shape)}, out / "model.pt")
        metrics["wall_seconds"] = time.time() - t0
        atomic_write_json(out / "metrics.json", metrics)
        _drop_checkpoint(s, out / "finetune_ckpt.pt")
        _drop_checkpoint(s, out / "scratch_ckpt.pt")
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    print(f"{method} at {a.target} on {a.dataset}: top1 {before_test['top1']:.2f}% -> {test['top1']:.2f}% "
          f"({metrics['speedup_macs']:.2f}x MACs)")


def cmd_aggregate(a: argparse.Namespace) -> None:
    from .report.aggregate import aggregate

    df = aggregate(a.inputs, a.out)
    print(f"{len(df)} runs -> {a.out}")


def cmd_report(a: argparse.Namespace) -> None:
    from .report.build import build_report

    paths = build_report(a.summary, a.out, metrics_files=a.metrics, claims=a.claims)
    print("reports written:\n  " + "\n  ".join(str(p) for p in paths))


def cmd_claims(a: argparse.Namespace) -> None:
    """Print every claim's verdicts (overview, then one row per comparison) and how they were made."""
    from .files import atomic_write_text
    from .report.aggregate import read_summary
    from .report.verdicts import claims_markdown, overview_markdown, selection_rule_text
    from .stats.claims import decision_rule_text, evaluate_claims, load_claims

    summary = read_summary(a.summary)
    results = evaluate_claims(summary, load_claims(a.claims))
    print(overview_markdown(results))
    print(claims_markdown(results))
    print(decision_rule_text(results) + " " + selection_rule_text(summary))
    if a.csv:
        atomic_write_text(a.csv, results.to_csv(index=False, lineterminator="\n"))
        print(f"full table (both intervals, raw and adjusted p, notes) -> {a.csv}")


def cmd_track_init(a: argparse.Namespace) -> None:
    from .tracking import init_study

    try:
        state = init_study(a.uri, a.experiment, a.study, a.state_file)
        print(f"MLflow: experiment {a.experiment} (id {state['experiment_id']}), study run {state['parent_run_id']}")
    except Exception as err:  # noqa: BLE001  (tracking must never stop the study)
        print(f"[tracking] could not initialise MLflow at {a.uri}: {err}; jobs will still write their files",
              file=sys.stderr)


def cmd_list(a: argparse.Namespace) -> None:
    from .data import list_datasets
    from .methods import get_method, list_methods
    from .models import list_models

    print("models:   " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    print("methods:")
    for name in list_methods():
        spec = get_method(name)
        opts = ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items())
        print(f"  {name:20s} [{spec.family}] {spec.summary}\n  {'':20s} options: {opts or '-'}")


def cmd_track_close(a: argparse.Namespace) -> None:
    from .tracking import close_study

    try:
        close_study(a.state_file, a.status)
    except Exception as err:  # noqa: BLE001
        print(f"[tracking] could not close the study run: {err}", file=sys.stderr)


# ----------------------------------------------------------------------------- argument parsing
#: Modules that register their own subcommands (``add_commands(subparsers)``), so tools such as
#: ``track-sync`` or ``prefetch`` keep their arguments next to their code instead of growing this file.
COMMAND_MODULES: tuple[str, ...] = ()


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="passprune", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="stage", required=True)

    def job(name: str, fn, help_: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_)
        q.add_argument("--dataset", required=True)
        q.add_argument("--arch", required=True)
        q.add_argument("--seed", type=int, required=True)
        q.add_argument("--settings", default="{}", help="resolved settings as JSON, or @file.json")
        q.add_argument("--threads", type=int, default=None, help="torch threads (overrides settings' threads)")
        q.add_argument("--out", required=True, help="output folder")
        q.set_defaults(fn=fn)
        return q

    job("pretrain", cmd_pretrain, "train the dense model")
    q = job("search", cmd_search, "choose the kept channels at a MACs target")
    q.add_argument("--method", required=True)
    q.add_argument("--target", type=float, required=True, help="fraction of dense MACs to keep, in (0, 1]")
    q.add_argument("--dense", required=True, help="dense model.pt")
    q.add_argument("--source", default=None, help="PASS hypernetwork.pt of a source task (hypernetwork transfer)")
    q.add_argument("--label", default=None,
                   help="name the run is reported under (search.json 'method'; default: --method), so one "
                        "registered method can run with several option sets, e.g. --method pass --label pass_plr1e-4")
    q.add_argument("--reference", default=None,
                   help="structure.json of a reference run (same dataset, arch, seed, target): the per-group widths "
                        "the controls random_widths and scratch reuse")
    q = job("finetune", cmd_finetune, "prune physically, fine-tune, evaluate")
    q.add_argument("--target", type=float, required=True)
    q.add_argument("--dense", required=True, help="dense model.pt of this dataset")
    q.add_argument("--search", required=True, help="search folder with structure.json and search.json")
    q.add_argument("--label", default=None, help="method name to report (transfer runs)")
    q.add_argument("--source-dataset", default=None, help="source task of a transferred structure")
    q.add_argument("--structure-only", action="store_true",
                   help="use only the kept channels from --search, starting from this dataset's dense weights")
    q = sub.add_parser("aggregate", help="one tidy row per finished run -> summary.csv")
    q.add_argument("inputs", nargs="+", help="metrics.json files")
    q.add_argument("--out", required=True)
    q.set_defaults(fn=cmd_aggregate)
    q = sub.add_parser("report", help="tables and figures from summary.csv")
    q.add_argument("--summary", required=True)
    q.add_argument("--out", required=True, help="reports folder")
    q.add_argument("--metrics", nargs="*", default=[], help="metrics.json files (per-group sparsity plot)")
    q.add_argument("--claims", default=None,
                   help="claims YAML (config/claims.yaml): verdicts open the README; tables/claims.*, "
                        "figures/claims_forest.*")
    q.set_defaults(fn=cmd_report)
    q = sub.add_parser("claims", help="check the paper's claims against summary.csv (paired by seed)")
    q.add_argument("--summary", required=True, help="results/summary.csv")
    q.add_argument("--claims", required=True, help="claims YAML, e.g. config/claims.yaml")
    q.add_argument("--csv", default=None, help="also write the full per-comparison table here")
    q.set_defaults(fn=cmd_claims)
    q = sub.add_parser("list", help="registered models, datasets and methods (with their options)")
    q.set_defaults(fn=cmd_list)
    q = sub.add_parser("track-init", help="create the MLflow store, experiment and study run once")
    q.add_argument("--uri", required=True)
    q.add_argument("--experiment", default="passprune")
    q.add_argument("--study", default="study")
    q.add_argument("--state-file", required=True)
    q.set_defaults(fn=cmd_track_init)
    q = sub.add_parser("track-close", help="mark the study run finished or failed")
    q.add_argument("--state-file", required=True)
    q.add_argument("--status", choices=["FINISHED", "FAILED"], required=True)
    q.set_defaults(fn=cmd_track_close)
    for module in COMMAND_MODULES:  # subcommands that live beside the concept they serve
        import importlib

        importlib.import_module(f"passprune.{module}").add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError, RuntimeError, KeyError) as err:
        # Clear, one-line errors for bad input; the traceback is still there with PASSPRUNE_DEBUG=1.
        import os

        if os.environ.get("PASSPRUNE_DEBUG"):
            raise
        raise SystemExit(f"passprune {args.stage}: error: {err}") from None


if __name__ == "__main__":
    main()
