"""Device choice for a job, including distinct GPUs for concurrent local jobs.

Snakemake limits how many GPU jobs run at once (``resources: gpu=1`` with ``--resources gpu=N``) but does
not say *which* GPU a job gets (snakemake/snakemake#281). On SLURM the scheduler sets
CUDA_VISIBLE_DEVICES and nothing is needed; on a local multi-GPU machine each job takes an exclusive
``flock`` on one slot file, held until the process exits, so two concurrent jobs never share a GPU.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import torch

_held: list = []  # open lock files: released by the OS when the process exits


def claim_gpu_slot(n_gpus: int, lock_dir: str | Path) -> int | None:
    """Return the index of a free GPU slot (and keep it locked), or None if all are taken."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_gpus):
        fh = open(lock_dir / f"gpu{i}.lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        _held.append(fh)
        return i
    return None


def resolve_device(name: str = "auto", lock_dir: str | Path | None = None) -> torch.device:
    """``auto``: CUDA when available, else CPU. With several visible GPUs and no scheduler-assigned
    device, a free one is claimed through ``lock_dir`` (default ``results/.gpu_locks``)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available; set device: auto or cpu")
        n = torch.cuda.device_count()
        if dev.index is None and n > 1:
            slot = claim_gpu_slot(n, lock_dir or os.environ.get("PASSPRUNE_GPU_LOCKS", "results/.gpu_locks"))
            dev = torch.device("cuda", slot if slot is not None else 0)
        torch.cuda.set_device(dev)
    return dev
