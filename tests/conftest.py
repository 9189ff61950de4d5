"""Shared fixtures: small real data (Fashion-MNIST subsets), small registry models, and the end-to-end tier's
one whole-DAG run of config/test.yaml.

Two tiers (`scripts/test.sh` runs both, the fast one first): every test that runs Snakemake over a study, a
SLURM cluster or real servers is marked ``e2e``; everything else is the fast tier for the edit-test loop
(``bash scripts/test.sh --fast``, or ``pytest -m "not e2e"``). A test that asks for ``ci_study`` is marked
``e2e`` here, so a whole-DAG test cannot slip into the fast tier.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "Snakefile"
TEST_CONFIG = REPO / "config" / "test.yaml"
#: Upper bound for one Snakemake run of an end-to-end test (seconds).
E2E_TIMEOUT = int(os.environ.get("PASSPRUNE_E2E_TIMEOUT", "1800"))
#: Fixtures that run a whole DAG: a test using one is end-to-end.
WHOLE_DAG_FIXTURES = {"ci_study"}


def _share_cores_among_xdist_workers() -> None:
    """Under pytest-xdist every worker is its own process with torch's default of one thread per core, so two
    workers on two cores run four busy threads, and OpenMP's spin-waiting burns the difference (measured: about
    a third more CPU time for the fast tier). Each worker, and every subprocess it starts, gets its share."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 1 or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


_share_cores_among_xdist_workers()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if WHOLE_DAG_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


def run_snakemake(
    workdir: Path, *args: str, configfile: Path = TEST_CONFIG, timeout: int = E2E_TIMEOUT
) -> subprocess.CompletedProcess:
    """``snakemake -s Snakefile -d workdir --configfile ... <args>`` with this venv first on PATH (the
    ``passprune`` CLI the rules call) and the config's own tracking store (no inherited MLFLOW_TRACKING_URI)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    if "--configfile" not in args:
        args = ("--configfile", str(configfile), *args)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def job_logs(workdir: Path) -> str:
    """Tails of a study's job logs, for a failure message."""
    parts = []
    for log in sorted((workdir / "results").rglob("*.log")):
        parts.append(f"--- {log.relative_to(workdir)}\n{log.read_text(errors='replace')[-2000:]}")
    return "\n".join(parts)


@pytest.fixture(scope="session")
def fmnist_root(tmp_path_factory) -> Path:
    """A data root with Fashion-MNIST unpacked and decoded once per session; end-to-end working directories
    link their ``data`` folder to it, so no job of theirs pays the first decode."""
    from passprune.data import load_dataset

    root = tmp_path_factory.mktemp("fmnist_root")
    load_dataset("fashion_mnist", root, seed=0, val_size=10, train_subset=10, test_subset=10)
    return root


def e2e_workdir(parent: Path, fmnist_root: Path, name: str = "work") -> Path:
    """A scratch working directory whose ``data`` (the configs' data root) is the session's decoded data."""
    workdir = parent / name
    workdir.mkdir()
    (workdir / "data").symlink_to(fmnist_root, target_is_directory=True)
    return workdir


@pytest.fixture(scope="session")
def ci_study(tmp_path_factory, fmnist_root) -> tuple[Path, float]:
    """The whole 30-job DAG of config/test.yaml, run ONCE per session and shared by every test that needs a
    finished study; returns (workdir, seconds). Tests that change it (reruns, a second study beside it) must
    leave its files as they found them."""
    workdir = e2e_workdir(tmp_path_factory.mktemp("ci_study"), fmnist_root)
    t0 = time.time()
    proc = run_snakemake(workdir, "--cores", "2")
    seconds = time.time() - t0
    if proc.returncode != 0:
        out = proc.stdout + proc.stderr
        pytest.fail(
            f"the pipeline failed (rc {proc.returncode}) after {seconds:.0f}s:\n{out[-6000:]}\n\n"
            f"job logs:\n{job_logs(workdir)}",
            pytrace=False,
        )
    print(f"\nwhole DAG of config/test.yaml: {seconds:.1f}s in {workdir}")
    return workdir, seconds


@pytest.fixture(scope="session")
def fmnist_small(tmp_path_factory):
    """A few hundred real Fashion-MNIST images (the Debian package, unpacked once per session)."""
    from passprune.data import load_dataset

    root = tmp_path_factory.mktemp("data")
    return load_dataset("fashion_mnist", root, seed=0, val_size=200, train_subset=512, test_subset=200)


@pytest.fixture(scope="session")
def fmnist_tiny(tmp_path_factory):
    """128 real Fashion-MNIST training images (64 validation, 64 test): for tests that run a method several times
    and need only a few full batches per epoch."""
    from passprune.data import load_dataset

    root = tmp_path_factory.mktemp("data_tiny")
    return load_dataset("fashion_mnist", root, seed=0, val_size=64, train_subset=128, test_subset=64)


def small_model(arch: str, num_classes: int = 10, in_channels: int = 1, width: float | None = None) -> nn.Module:
    """A narrow registry model with randomised BatchNorm statistics, so masking bugs cannot hide behind
    identity-like normalisation. ``width`` defaults to 1.0 for the CIFAR ResNets (16-64 channels), 0.25 otherwise."""
    from passprune.models import build_model

    if width is None:
        width = 1.0 if arch in ("resnet20", "resnet56") else 0.25
    torch.manual_seed(0)
    model = build_model(arch, num_classes=num_classes, in_channels=in_channels, width=width)
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model.eval()
