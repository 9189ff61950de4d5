"""Kill and resume, for real: SIGKILL the running workflow (Snakemake and its job) in the middle of
pretraining, of a PASS search and of a sparsity-training baseline, rerun it as a user would
(``snakemake --unlock``, then the same command with ``--rerun-incomplete``), and get the same files, byte for
byte on CPU, as an uninterrupted run of the same jobs in another folder.

The kill happens as soon as the job's resume checkpoint appears (after its first epoch / its first
``checkpoint_every`` steps), so the rerun must resume from it (its log says so) and still land on exactly the
weights, structure and records of the run that was never interrupted. The smallest DAG that proves it: one
dense model and the two searches, on a few hundred images (fine-tuning, aggregation and the report read
these files and are not interrupted here; tests/test_workflow.py runs them).

    pytest -m e2e tests/test_resume.py      # about a minute and a half on 2 CPU cores
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import SNAKEFILE, e2e_workdir

pytestmark = pytest.mark.e2e

#: The sparsity-training baseline under test (network slimming as Torch-Pruning trains it: L1 on BN scales).
SPARSITY = "bn_scale_tp"

CFG = {
    "study": "resume",
    "device": "cpu",
    "data": {
        "root": "data",
        "val_size": 100,
        "train_subset": 512,
        "test_subset": 100,
        "image_size": None,
        "num_workers": 0,
    },
    "datasets": ["fashion_mnist"],
    "archs": ["resnet20"],
    "arch_settings": {"resnet20": {"width": 0.25}},
    "seeds": [0],
    "targets": [0.5],
    "pretrain": {
        "pretrained": False,
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "augment": True},
    },
    "finetune": {
        "epochs": 1,
        "batch_size": 64,
        "lr": 0.01,
        "schedule": "cosine",
        "augment": False,
        "max_steps_per_epoch": 8,
        "bn_recalibration_batches": 2,
    },
    "search": {"batch_size": 32, "max_prune_frac": 0.9},
    "methods": {
        "pass": {"steps": 12, "checkpoint_every": 4, "log_every": 4},
        SPARSITY: {"epochs": 2, "max_steps_per_epoch": 6},
    },
    "latency": {"enabled": False},
    "tracking": {"enabled": False, "uri": "sqlite:///results/mlflow.db", "experiment": "resume"},
    "resources": {
        s: {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0} for s in ("pretrain", "search", "finetune")
    },
}
STUDY = Path("results") / CFG["study"]
RUN = STUDY / "fashion_mnist" / "resnet20" / "seed0"
PASS_SEARCH = RUN / "pass" / "macs0.5" / "search"
SPARSITY_SEARCH = RUN / SPARSITY / "macs0.5" / "search"
#: The sparsity training every target's search of the method starts from (rule sparsify), named by a digest.
SPARSITY_TRAIN = RUN / "_sparsity" / SPARSITY / "*"
#: What both folders build: the dense model and the two searches (pretraining runs as their input).
TARGETS = (str(PASS_SEARCH / "structure.json"), str(SPARSITY_SEARCH / "structure.json"))


def _snakemake(workdir: Path, *args: str, popen: bool = False):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(SNAKEFILE),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "1",
        *args,
    ]
    if popen:  # its own session, so one killpg reaches Snakemake and the job it runs
        return subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def _workdir(root: Path, name: str, fmnist_root: Path) -> Path:
    w = e2e_workdir(root, fmnist_root, name)
    (w / "config.yaml").write_text(yaml.safe_dump(CFG))
    return w


def _dense_dir(workdir: Path) -> Path:
    (d,) = (workdir / "results" / "_dense" / "fashion_mnist" / "resnet20" / "seed0").iterdir()
    return d


def _kill_when(workdir: Path, target: str, checkpoint: str, timeout: float = 300) -> None:
    """Start Snakemake on ``target``; SIGKILL it (and its job) the moment ``checkpoint`` exists."""
    proc = _snakemake(workdir, target, popen=True)
    t0 = time.time()
    try:
        while not list(workdir.glob(checkpoint)):
            assert proc.poll() is None, f"the workflow ended (rc {proc.returncode}) before {checkpoint} appeared"
            assert time.time() - t0 < timeout, f"{checkpoint} never appeared"
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the job finished before the kill (rc {proc.returncode})"


def _rerun(workdir: Path, *target: str) -> None:
    _snakemake(workdir, "--unlock")
    _snakemake(workdir, "--rerun-incomplete", *target)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: Files whose bytes must match between the interrupted and the uninterrupted study.
FILES = [
    "{dense}/model.pt",
    "{sparse}/model.pt",
    f"{PASS_SEARCH}/structure.json",
    f"{PASS_SEARCH}/hypernetwork.pt",
    f"{SPARSITY_SEARCH}/structure.json",
    f"{SPARSITY_SEARCH}/search_model.pt",
]
#: Keys of the records that naturally differ (timings, provenance, the resume bookkeeping).
VOLATILE = ("provenance", "resumed_from_step", "resumed_from_epoch")


def _sparse_dir(workdir: Path) -> Path:
    (d,) = workdir.glob(str(SPARSITY_TRAIN))
    return d


def _files(workdir: Path) -> dict[str, str]:
    where = {"dense": _dense_dir(workdir).relative_to(workdir), "sparse": _sparse_dir(workdir).relative_to(workdir)}
    return {f.format(**where): _sha(workdir / f.format(**where)) for f in FILES}


def _measured(obj):
    """A record without the keys that naturally differ between an interrupted and an uninterrupted run."""
    if isinstance(obj, dict):
        return {k: _measured(v) for k, v in obj.items() if "second" not in k and k not in VOLATILE}
    if isinstance(obj, list):
        return [_measured(v) for v in obj]
    return obj


def _records(workdir: Path) -> dict[str, dict]:
    """The dense model's and the sparsity training's metrics.json and both search.json files, measured values only."""
    files = {
        "dense": _dense_dir(workdir) / "metrics.json",
        "sparsify": _sparse_dir(workdir) / "metrics.json",
        "pass": workdir / PASS_SEARCH / "search.json",
        SPARSITY: workdir / SPARSITY_SEARCH / "search.json",
    }
    return {name: _measured(json.loads(f.read_text())) for name, f in files.items()}


def test_killed_jobs_resume_to_the_same_files(tmp_path, fmnist_root):
    reference = _workdir(tmp_path, "uninterrupted", fmnist_root)
    _snakemake(reference, *TARGETS)

    work = _workdir(tmp_path, "killed", fmnist_root)
    # 1. pretraining, after its first epoch's checkpoint
    dense_glob = "results/_dense/fashion_mnist/resnet20/seed0/*/train_ckpt.pt"
    _kill_when(work, TARGETS[0], dense_glob)
    dense = _dense_dir(work)
    assert not (dense / "model.pt").exists()
    _rerun(work, str(dense.relative_to(work) / "model.pt"))
    assert "resumed from" in (dense / "pretrain.log").read_text()  # the rerun's log names the resume
    assert not (dense / "train_ckpt.pt").exists(), "a finished job removes its resume checkpoint"

    # 2. the PASS search, after its first checkpoint (checkpoint_every steps)
    _kill_when(work, TARGETS[0], str(PASS_SEARCH / "search_ckpt.pt"))
    assert not (work / PASS_SEARCH / "structure.json").exists()
    _rerun(work, TARGETS[0])
    assert "resumed from" in next((work / STUDY / "logs" / "search").rglob("pass/macs0.5.log")).read_text()

    # 3. the sparsity-training baseline's (shared) sparsity training, after its first epoch
    _kill_when(work, TARGETS[1], str(SPARSITY_TRAIN / "sparsity_ckpt.pt"))
    _rerun(work, TARGETS[1])
    assert "resumed from" in next((work / STUDY / "logs" / "sparsify").rglob(f"{SPARSITY}/*.log")).read_text()

    # 4. everything compared with the run that was never interrupted
    assert _files(work) == _files(reference)
    assert _records(work) == _records(reference)
    assert not list(work.rglob("*_ckpt.pt")), "finished jobs remove their resume checkpoints"
