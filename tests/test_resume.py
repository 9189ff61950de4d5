"""Kill and resume, for real: SIGKILL the running workflow (Snakemake and its job) in the middle of
pretraining, of a PASS search and of a sparsity-training baseline, rerun it as a user would
(``snakemake --unlock``, then the same command with ``--rerun-incomplete``), and get the same files, byte for
byte on CPU, as an uninterrupted run of the same study in another folder.

The kill happens as soon as the job's resume checkpoint appears (after its first epoch / its first
``checkpoint_every`` steps), so the rerun must resume from it (its log says so) and still land on exactly the
weights, structure and accuracy of the run that was never interrupted.

    pytest -m slow tests/test_resume.py      # about 2-3 minutes on 2 CPU cores
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

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
pytestmark = pytest.mark.slow

#: The sparsity-training baseline under test (network slimming as Torch-Pruning trains it: L1 on BN scales).
SPARSITY = "bn_scale_tp"

CFG = {
    "study": "resume",
    "device": "cpu",
    "data": {
        "root": "data",
        "val_size": 200,
        "train_subset": 1000,
        "test_subset": 200,
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
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.05, "schedule": "cosine", "augment": True},
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
        "pass": {"steps": 30, "checkpoint_every": 10, "log_every": 10},
        SPARSITY: {"epochs": 3, "max_steps_per_epoch": 10},
    },
    "latency": {"enabled": False},
    "tracking": {"enabled": False, "uri": "sqlite:///results/mlflow.db", "experiment": "resume"},
    "resources": {
        s: {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0} for s in ("pretrain", "search", "finetune")
    },
}
STUDY = Path("results") / CFG["study"]
RUN = STUDY / "fashion_mnist" / "resnet20" / "seed0"


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


def _workdir(root: Path, name: str) -> Path:
    w = root / name
    w.mkdir()
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
    f"{RUN}/pass/macs0.5/search/structure.json",
    f"{RUN}/pass/macs0.5/search/hypernetwork.pt",
    f"{RUN}/{SPARSITY}/macs0.5/search/structure.json",
    f"{RUN}/{SPARSITY}/macs0.5/search/search_model.pt",
    f"{RUN}/pass/macs0.5/model.pt",
    f"{RUN}/{SPARSITY}/macs0.5/model.pt",
]
#: Measured values of the records (timings, provenance and the resume bookkeeping naturally differ).
VALUES = (
    "top1",
    "val_top1",
    "top1_before_ft",
    "val_top1_before_ft",
    "macs",
    "params",
    "best_epoch",
    "search_steps",
    "weight_train_steps",
    "finetune_steps",
)


def _files(workdir: Path) -> dict[str, str]:
    dense = _dense_dir(workdir).relative_to(workdir)
    return {f.format(dense=dense): _sha(workdir / f.format(dense=dense)) for f in FILES}


def _records(workdir: Path) -> dict[str, dict]:
    out = {}
    for f in sorted((workdir / "results").rglob("metrics.json")):
        m = json.loads(f.read_text())
        out[m["method"]] = {k: m.get(k) for k in VALUES} | {
            "history": [{k: v for k, v in h.items() if "second" not in k and k != "lr"} for h in m["history"]]
        }
    return out


def test_killed_jobs_resume_to_the_same_files(tmp_path):
    reference = _workdir(tmp_path, "uninterrupted")
    _snakemake(reference)

    work = _workdir(tmp_path, "killed")
    # 1. pretraining, after its first epoch's checkpoint
    dense_glob = "results/_dense/fashion_mnist/resnet20/seed0/*/train_ckpt.pt"
    _kill_when(work, "results/resume/summary.csv", dense_glob)
    dense = _dense_dir(work)
    assert not (dense / "model.pt").exists()
    _rerun(work, str(dense.relative_to(work) / "model.pt"))
    assert "resumed from" in (dense / "pretrain.log").read_text()  # the rerun's log names the resume
    assert not (dense / "train_ckpt.pt").exists(), "a finished job removes its resume checkpoint"

    # 2. the PASS search, after its first checkpoint (checkpoint_every steps)
    pass_dir = RUN / "pass" / "macs0.5" / "search"
    _kill_when(work, str(pass_dir / "structure.json"), str(pass_dir / "search_ckpt.pt"))
    assert not (work / pass_dir / "structure.json").exists()
    _rerun(work, str(pass_dir / "structure.json"))
    assert "resumed from" in next((work / STUDY / "logs" / "search").rglob("pass/macs0.5.log")).read_text()

    # 3. the sparsity-training baseline, after its first epoch
    sp_dir = RUN / SPARSITY / "macs0.5" / "search"
    _kill_when(work, str(sp_dir / "structure.json"), str(sp_dir / "sparsity_ckpt.pt"))
    _rerun(work, str(sp_dir / "structure.json"))
    assert "resumed from" in next((work / STUDY / "logs" / "search").rglob(f"{SPARSITY}/macs0.5.log")).read_text()

    # 4. the rest of the study, then compare everything with the run that was never interrupted
    _rerun(work)
    assert _files(work) == _files(reference)
    assert _records(work) == _records(reference)
    assert (work / STUDY / "summary.csv").is_file()
