"""What every job stage does alike: parse its settings, seed, pick the device, load the data."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..files import read_json
from ..settings import DataSettings, JobSettings

#: How the workflow hands a job its MLflow settings: not in --settings, because a change of tracking store or
#: study must not make Snakemake rerun (and a dense model shared by two studies must not look changed).
TRACKING_ENV = "PASSPRUNE_TRACKING"


@dataclass(kw_only=True)
class Job:
    """One job as the command line names it; stage-specific jobs add their arguments."""

    stage: str
    dataset: str
    arch: str
    seed: int
    out: Path
    settings: JobSettings = field(default_factory=JobSettings)

    @property
    def raw(self) -> dict[str, Any]:
        """The settings exactly as given (recorded in metrics.json, part of resume fingerprints)."""
        return self.settings.raw

    def tags(self, **extra: Any) -> dict[str, Any]:
        """MLflow tags of the job's run: its wildcards."""
        tags = {"stage": self.stage, "dataset": self.dataset, "arch": self.arch, "seed": self.seed}
        tags.update({k: v for k, v in extra.items() if v is not None})
        return tags


def parse_settings(text: str, stage: str, threads: int | None = None) -> JobSettings:
    """``--settings``: a JSON object or ``@file.json``; ``--threads`` and the workflow's tracking environment
    are folded in (as they always were, so they are recorded with the run)."""
    if text.startswith("@"):
        raw = read_json(text[1:])
    else:
        try:
            raw = json.loads(text) if text else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"--settings is not valid JSON ({err}); pass a JSON object or @file.json") from None
    if not isinstance(raw, dict):
        raise ValueError(f"--settings must be a JSON object, got {type(raw).__name__}")
    if threads:
        raw["threads"] = threads
    if "tracking" not in raw and os.environ.get(TRACKING_ENV):
        raw["tracking"] = json.loads(os.environ[TRACKING_ENV])
    return JobSettings.from_dict(raw, stage)


def load_data(data: DataSettings, dataset: str, seed: int):
    """The job's splits (train / val carved from train / test), from the decoded on-disk cache."""
    from ..data import load_dataset

    return load_dataset(
        dataset,
        data.root,
        seed=seed,
        val_size=data.val_size,
        train_subset=data.train_subset,
        test_subset=data.test_subset,
        image_size=data.image_size,
        num_workers=data.num_workers,
    )


def start_job(job: Job):
    """Threads, seed, device and data: returns (start time, device, data)."""
    from ..devices import resolve_device

    t0 = time.time()
    if job.settings.threads:
        torch.set_num_threads(int(job.settings.threads))
    torch.manual_seed(job.seed)
    device = resolve_device(job.settings.device)
    return t0, device, load_data(job.settings.data, job.dataset, job.seed)


def job_trainer(job: Job, run, data, device):
    """``engine.train`` bound to one job: its data, device and seed, resume checkpoints in ``job.out`` and
    every epoch logged to the job's MLflow run. Each stage trains through this, so they checkpoint and log
    alike; ``log_prefix`` keeps a second training phase's curves (scratch's pretraining) apart."""
    from ..engine import train

    def fit(model, cfg, checkpoint: str, *, desc: str, fingerprint: str, log_prefix: str = "", **kw):
        def log(r: dict) -> None:
            rec = {f"{log_prefix}{k}": v for k, v in r.items() if k != "epoch"} if log_prefix else r
            run.log_metrics(rec, r["epoch"])

        return train(
            model,
            data,
            cfg,
            device=device,
            seed=job.seed,
            checkpoint=job.out / checkpoint,
            on_epoch=log,
            desc=desc,
            fingerprint=fingerprint,
            **kw,
        )

    return fit


def fingerprint(*parts: Any) -> str:
    """Digest of what a training run depends on (settings, structure, starting weights' file): a resume
    checkpoint written under another fingerprint is not resumed from."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def drop_checkpoint(settings: JobSettings, path: Path) -> None:
    """A finished job's resume checkpoint is dead weight (a full model + optimizer state): remove it once the
    job's real outputs are written, unless ``keep_checkpoints`` is set."""
    if not settings.keep_checkpoints:
        path.unlink(missing_ok=True)
