"""A job's start-up imports only what it uses (issue 19, "cheap jobs").

Every Snakemake job is a fresh ``passprune`` process, so a library imported for nothing is paid once per job:
torchvision alone (it pulls in ``torch._dynamo``) or mlflow cost about as much as a job's own work on a small
study. These tests run a real ``passprune search --method random`` job on Fashion-MNIST / ResNet-20 in a fresh
interpreter and list what it had imported by its end, so an import added anywhere on the job's path (a module's
top, or a function the job calls, as ``files.provenance`` once imported torchvision for ``__version__``) fails
here. They check which modules are loaded, not how long anything takes: ``bench/startup.py`` measures the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

#: Optional libraries a random-search job must not import: each is used elsewhere (torchvision: ImageNet models,
#: folder datasets, downloads; mlflow: live tracking and track-sync; the rest: reports and claims).
HEAVY = ("torchvision", "mlflow", "pandas", "matplotlib", "scipy", "seaborn", "statsmodels", "sympy", "PIL")

#: Runs ``passprune`` with the given arguments and then prints the top-level modules the process holds.
RUN_AND_LIST = """
import json, sys
from passprune.cli import main
try:
    main(sys.argv[1:])
finally:
    print("IMPORTED " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _imported(code: str, *args: str) -> set[str]:
    """Top-level modules a fresh interpreter holds after ``code`` (which prints them on an ``IMPORTED`` line)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PASSPRUNE_TRACKING")}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("IMPORTED ")), None)
    assert proc.returncode == 0 and line, (proc.stdout + proc.stderr)[-3000:]
    return set(json.loads(line[len("IMPORTED ") :]))


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    """A narrow untrained ResNet-20 saved as pretraining saves it (the search only reads its weights)."""
    from passprune.checkpoint import save_dense
    from passprune.models import build_model

    kwargs = {"num_classes": 10, "in_channels": 1, "width": 0.25}
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("dense") / "model.pt"
    save_dense(path, "resnet20", kwargs, build_model("resnet20", **kwargs), [1, 1, 28, 28])
    return path


@pytest.mark.parametrize(
    "tracking",
    [{"enabled": False}, {"enabled": True, "live": False}],
    ids=["tracking-off", "tracking-files-only"],
)
def test_random_search_job_imports_only_what_it_uses(dense, fmnist_root, tmp_path, tracking):
    """Tracking off, and tracking with ``live: false`` (the embedded default's and config/test.yaml's jobs):
    the job imports torch and torch_pruning (its pruning space is a Torch-Pruning dependency graph) and none of
    :data:`HEAVY`."""
    settings = {
        "model": {"width": 0.25},
        "data": {"root": str(fmnist_root), "val_size": 100, "train_subset": 500, "test_subset": 100},
        "search": {"batch_size": 32, "max_prune_frac": 0.9},
        "tracking": {**tracking, "uri": f"sqlite:///{tmp_path}/mlflow.db", "state_file": str(tmp_path / "s.json")},
    }
    out = tmp_path / "search"
    args = ["search", "--dataset", "fashion_mnist", "--arch", "resnet20", "--seed", "0", "--method", "random"]
    args += ["--target", "0.5", "--dense", str(dense), "--settings", json.dumps(settings), "--threads", "1"]
    mods = _imported(RUN_AND_LIST, *args, "--out", str(out))
    assert (out / "search.json").is_file(), "the job did not finish"
    provenance = json.loads((out / "search.json").read_text())["provenance"]
    assert provenance["torchvision"] == metadata.version("torchvision")  # recorded, though never imported
    assert provenance["torch_pruning"] == metadata.version("torch-pruning")
    assert {"torch", "torch_pruning", "passprune"} <= mods  # the listing sees what the job does import
    assert sorted(m for m in HEAVY if m in mods) == []
    assert not (tmp_path / "mlflow.db").exists(), "a files-only job opened the MLflow store"


def test_job_modules_import_no_optional_library():
    """Every module a pretrain, search or fine-tune job loads, and every method (registered at first use),
    imports none of :data:`HEAVY` at import time: they import them inside the functions that use them."""
    code = (
        "import json, sys\n"
        "import passprune.cli, passprune.stages, passprune.stages.search, passprune.stages.finetune\n"
        "import passprune.stages.pretrain, passprune.engine, passprune.data, passprune.models, passprune.structure\n"
        "import passprune.tracking, passprune.tracking_sync, passprune.tracking_cli, passprune.methods\n"
        "passprune.methods.get_method('random')\n"
        "print('IMPORTED ' + json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    mods = _imported(code)
    assert "torch_pruning" in mods  # the methods were really loaded
    assert sorted(m for m in HEAVY if m in mods) == []
