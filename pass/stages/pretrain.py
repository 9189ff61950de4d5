"""Stage ``pretrain``: the dense model every method of a (dataset, arch, seed) starts from."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from ..checkpoint import build, example_input, save_dense
from ..files import provenance
from ..records import write_record
from .common import Job, drop_checkpoint, fingerprint, job_trainer, start_job


def model_kwargs(job: Job, data) -> dict[str, Any]:
    """Constructor arguments of the dense network: the dataset's classes and channels, the arch's width."""
    m = job.settings.model
    return {"num_classes": data.num_classes, "in_channels": data.in_channels, "width": m.width, **m.kwargs}


def run_pretrain(job: Job) -> dict[str, Any]:
    """Train (or fine-tune from ImageNet weights) the dense model, choose its epoch on validation, test once."""
    from ..engine import evaluate
    from ..structure import conv_linear_macs, count_macs_params
    from ..tracking import JobRun

    t0, device, data = start_job(job)
    kw = model_kwargs(job, data)
    m = job.settings.model
    model = build(job.arch, kw, pretrained=m.pretrained, weights_dir=m.weights_dir)
    cfg = job.settings.train
    out = job.out
    run_name = f"{job.dataset}/{job.arch}/seed{job.seed}/dense"
    key = (job.dataset, job.arch, job.seed, job.raw)
    with JobRun(job.settings.tracking, run_name, job.tags(method="dense"), job.raw) as run:
        fit = job_trainer(job, run, data, device)
        res = fit(model, cfg, "train_ckpt.pt", desc=f"pretrain {job.arch}", fingerprint=fingerprint(*key))
        test = evaluate(model, data.test, device, cfg.eval_batch_size)
        cpu = copy.deepcopy(model).cpu().to(memory_format=torch.contiguous_format)
        x0 = example_input(data)
        macs_tp, params = count_macs_params(cpu, x0)
        metrics = {
            "stage": "pretrain",
            "dataset": job.dataset,
            "arch": job.arch,
            "seed": job.seed,
            "method": "dense",
            "family": "dense",
            "target": 1.0,
            "top1": test["top1"],
            "top1_before_ft": test["top1"],
            "val_top1": res.best_val_top1,
            "best_epoch": res.best_epoch,
            "macs": conv_linear_macs(cpu, x0),
            "macs_tp": macs_tp,
            "params": params,
            "train_seconds": res.seconds,
            "history": res.history,
            "n_train": len(data.train),
            "n_val": len(data.val),
            "n_test": len(data.test),
            "settings": job.raw,
            "provenance": provenance(),
        }
        save_dense(out / "model.pt", job.arch, kw, cpu, list(x0.shape))
        metrics["wall_seconds"] = time.time() - t0
        write_record(out / "metrics.json", metrics)
        drop_checkpoint(job.settings, out / "train_ckpt.pt")
        run.log_metrics({k: metrics[k] for k in ("top1", "val_top1", "macs", "params", "train_seconds")})
        run.log_outputs(out)  # the job's records, kept-ratio plot and log, to its MLflow run
    print(f"dense {job.arch} on {job.dataset}: test top1 {test['top1']:.2f}% (val {res.best_val_top1:.2f}%)")
    return metrics
