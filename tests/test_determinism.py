"""What is reproducible, checked: the same job run twice on this machine's CPU writes byte-identical files.

Promised: same machine, same CPU build of torch, same settings and seed -> the same bytes for model.pt and
structure.json, and metrics.json identical up to its timing fields. Not promised: the same numbers on another
CPU (vectorised kernels differ in summation order) or on a GPU (non-deterministic cuDNN kernels); the README
says so. Each job runs in a fresh process through the CLI that Snakemake calls; the two runs of a job run at the
same time (one thread each), as Snakemake runs independent jobs, which also halves the wait on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# timings, and the provenance block (it holds the time and host of the run)
VOLATILE = {
    "wall_seconds",
    "train_seconds",
    "finetune_seconds",
    "search_seconds",
    "job_seconds",
    "provenance",
    "search_loop_seconds",
    "sparsity_seconds",
    "gradient_seconds",
    "seconds",
}


def _settings(root: Path, method_options: dict | None = None) -> str:
    return json.dumps(
        {
            "data": {"root": str(root), "val_size": 100, "train_subset": 400, "test_subset": 100},
            "device": "cpu",
            "threads": 1,
            "model": {"width": 0.25},
            "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "max_steps_per_epoch": 4},
            "search": {"batch_size": 32, "max_prune_frac": 0.9},
            "method_options": method_options or {},
            "tracking": {"enabled": False},
        }
    )


def _cli_twice(*runs: list[str]) -> None:
    """Run ``passprune <args>`` once per argument list, all at the same time, each in a fresh process."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "passprune.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for args in runs
    ]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out


def _strip(obj):
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("det")
    root = tmp / "data"
    from passprune.data import load_dataset

    load_dataset("fashion_mnist", root, seed=0, val_size=10, train_subset=10, test_subset=10)  # decoded once
    job = ["--dataset", "fashion_mnist", "--arch", "resnet20", "--seed", "3", "--settings", _settings(root)]
    outs = [tmp / f"dense_{name}" for name in ("a", "b")]
    _cli_twice(*(["pretrain", *job, "--out", str(out)] for out in outs))
    return root, outs


def test_pretraining_twice_gives_the_same_bytes(dense):
    _, (a, b) = dense
    assert (a / "model.pt").read_bytes() == (b / "model.pt").read_bytes()
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert _strip(ma) == _strip(mb)


@pytest.mark.parametrize("method,options", [("pass", {"steps": 4, "log_every": 2}), ("l1", {})])
def test_a_search_twice_gives_the_same_structure(dense, tmp_path, method, options):
    root, (a, _) = dense
    job = ["--dataset", "fashion_mnist", "--arch", "resnet20", "--seed", "3", "--method", method, "--target", "0.5"]
    job += ["--dense", str(a / "model.pt"), "--settings", _settings(root, options)]
    outs = [tmp_path / name for name in ("a", "b")]
    _cli_twice(*(["search", *job, "--out", str(out)] for out in outs))
    assert (outs[0] / "structure.json").read_bytes() == (outs[1] / "structure.json").read_bytes()
    sa, sb = (json.loads((o / "search.json").read_text()) for o in outs)
    assert _strip(sa) == _strip(sb)
