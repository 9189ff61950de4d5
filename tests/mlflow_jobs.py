"""Tiny real jobs for the tracking tests: N processes at once, each a search then a fine-tuning shaped like
``passprune search`` / ``passprune finetune`` (same files, run names, tags, per-step and per-epoch logging
through the real ``JobRun``, ``log_outputs`` at the end), each with its stdout+stderr in its Snakemake-style
log. No training: the tests are about the store.

    python tests/mlflow_jobs.py RESULTS STUDY --jobs 16 [--epochs 20] [--sleep 0.02]

Run from the folder that holds RESULTS (like the workflow), with PASSPRUNE_TRACKING set. The jobs are
forked after one import of MLflow (16 separate imports take minutes on 2 cores); each child is its own
process with its own MLflow client. Exits 1 if any job failed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

from passprune.files import atomic_write_json
from passprune.tracking import JobRun

GROUPS = {"conv1": 8, "layer1.0": 8, "layer1.1": 16, "layer2.0": 16, "layer3.0": 32, "layer3.1": 32}
DATASET, ARCH, TARGET = "fashion_mnist", "resnet20", 0.5


def _redirect(log: Path) -> None:
    """What a rule's ``> {log} 2>&1`` does: JobRun finds the log through /proc/self/fd/1."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def job(results: Path, study: str, seed: int, epochs: int, sleep: float) -> None:
    rng = random.Random(seed)
    tracking = json.loads(os.environ["PASSPRUNE_TRACKING"])
    method = "pass" if seed % 2 == 0 else "l1"
    run_dir = results / study / DATASET / ARCH / f"seed{seed}" / method / f"macs{TARGET:g}"
    rel = Path(DATASET, ARCH, f"seed{seed}", method, f"macs{TARGET:g}.log")
    raw = {
        "device": "cpu",
        "threads": 1,
        "data": {"root": "data", "val_size": 200},
        "tracking": tracking,
        "search": {"batch_size": 32, "max_prune_frac": 0.9},
        "method_options": {"steps": epochs},
    }

    # --- search: per-step curve, then search.json + structure.json
    _redirect(results / study / "logs" / "search" / rel)
    t0 = time.time()
    options = {"steps": epochs, "log_every": 1, "lr": 0.01}
    tags = {
        "stage": "search",
        "dataset": DATASET,
        "arch": ARCH,
        "seed": seed,
        "method": method,
        "base_method": method,
        "target": TARGET,
        "family": "pass" if method == "pass" else "baseline",
    }
    with JobRun(
        tracking, f"{DATASET}/{ARCH}/seed{seed}/{method}/macs{TARGET}/search", tags, {"options": options, **raw}
    ) as run:
        history = []
        for step in range(1, epochs + 1):
            rec = {"search_loss": 2.3 / step + rng.random() / 100, "search_top1": min(99.0, 10.0 + 3 * step)}
            history.append({"step": step, **rec})
            run.log_metrics(rec, step)
            print(f"search step {step} loss {rec['search_loss']:.4f}", flush=True)
            time.sleep(sleep)
        kept = {g: sorted(rng.sample(range(n), max(1, int(n * rng.uniform(0.3, 0.9))))) for g, n in GROUPS.items()}
        search = {
            "method": method,
            "base_method": method,
            "family": tags["family"],
            "target": TARGET,
            "macs_ratio": 0.4987,
            "search_seconds": time.time() - t0,
            "search_steps": epochs,
            "search_images": 32 * epochs,
            "weight_train_steps": 0,
            "weight_train_images": 0,
            "weights": "dense",
            "options": options,
            "reference": None,
            "info": {"history": history, "selected_step": epochs},
            "provenance": {"passprune": "test"},
            "job_seconds": time.time() - t0,
        }
        atomic_write_json(run_dir / "search" / "search.json", search)
        atomic_write_json(
            run_dir / "search" / "structure.json",
            {
                "arch": ARCH,
                "dataset": DATASET,
                "target": TARGET,
                "method": method,
                "base_method": method,
                "group_sizes": GROUPS,
                "kept": kept,
            },
        )
        run.log_metrics({"search_seconds": search["search_seconds"], "macs_ratio": search["macs_ratio"]})
        run.log_outputs(run_dir / "search")

    # --- fine-tuning: per-epoch curve, then metrics.json
    _redirect(results / study / "logs" / "finetune" / rel)
    t0 = time.time()
    tags = {
        "stage": "finetune",
        "dataset": DATASET,
        "arch": ARCH,
        "seed": seed,
        "method": method,
        "target": TARGET,
        "family": tags["family"],
    }
    ft_raw = {**raw, "train": {"epochs": epochs, "batch_size": 64, "lr": 0.01}}
    with JobRun(tracking, f"{DATASET}/{ARCH}/seed{seed}/{method}/macs{TARGET}", tags, ft_raw) as run:
        history = []
        for epoch in range(1, epochs + 1):
            rec = {
                "epoch": epoch,
                "train_loss": 1.0 / epoch,
                "train_top1": 50 + epoch / 2,
                "val_top1": 50 + epoch / 3 + rng.random(),
                "val_loss": 1.1 / epoch,
                "lr": 0.01 / epoch,
                "seconds": time.time() - t0,
            }
            history.append(rec)
            run.log_metrics(rec, epoch)
            print(f"finetune epoch {epoch} val_top1 {rec['val_top1']:.2f}", flush=True)
            time.sleep(sleep)
        metrics = {
            "stage": "finetune",
            "dataset": DATASET,
            "arch": ARCH,
            "seed": seed,
            "method": method,
            "family": tags["family"],
            "target": TARGET,
            "source": None,
            "top1": 80 + rng.random(),
            "top1_before_ft": 40 + rng.random(),
            "val_top1": max(h["val_top1"] for h in history),
            "best_epoch": epochs,
            "macs": 123456,
            "dense_macs": 246912,
            "params": 4321,
            "history": history,
            "kept_channels": {g: len(v) for g, v in kept.items()},
            "group_sizes": GROUPS,
            "group_order": list(GROUPS),
            "select_on_val": False,
            "settings": ft_raw,
            "wall_seconds": time.time() - t0,
        }
        atomic_write_json(run_dir / "metrics.json", metrics)
        run.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        run.log_outputs(run_dir)
    print(f"done seed {seed}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("results", type=Path)
    p.add_argument("study")
    p.add_argument("--jobs", type=int, default=16)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--first-seed", type=int, default=0)
    a = p.parse_args(argv)
    # imported once, before the fork: what every real job pays once per process, paid here once for all
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import mlflow.store.artifact.local_artifact_repo  # noqa: F401
    import mlflow.store.artifact.mlflow_artifacts_repo  # noqa: F401
    import mlflow.store.tracking.rest_store  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.tracking  # noqa: F401

    ctx = mp.get_context("fork")
    procs = [
        ctx.Process(target=job, args=(a.results, a.study, s, a.epochs, a.sleep))
        for s in range(a.first_seed, a.first_seed + a.jobs)
    ]
    for q in procs:
        q.start()
    for q in procs:
        q.join()
    failed = [q.exitcode for q in procs if q.exitcode != 0]
    print(f"{len(procs) - len(failed)} of {len(procs)} jobs finished")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
