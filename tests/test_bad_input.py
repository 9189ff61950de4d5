"""Bad input: each a clear error naming the file or key (and the fix), and nothing already computed lost.

Every case runs the real command (``passprune.cli.main``) on real files of a tiny study: a dense model and a
structure made once per module, then damaged copies of them. "Nothing lost" is checked by hashing every
file that existed before the failing command: all are unchanged, and the failing job leaves no output.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from passprune.cli import main

DATA = {"root": "data", "val_size": 100, "train_subset": 300, "test_subset": 100}
PRETRAIN = {
    "data": DATA,
    "device": "cpu",
    "model": {"width": 0.25},
    "train": {"epochs": 1, "batch_size": 64, "lr": 0.05, "max_steps_per_epoch": 3},
}
SEARCH = {"data": DATA, "device": "cpu", "search": {"batch_size": 32, "max_prune_frac": 0.9}}
FINETUNE = {
    "data": DATA,
    "device": "cpu",
    "latency": {"enabled": False},
    "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01, "max_steps_per_epoch": 2, "bn_recalibration_batches": 1},
}
JOB = ["--dataset", "fashion_mnist", "--arch", "resnet20", "--seed", "0"]


def _run(*args: str) -> None:
    main([str(a) for a in args])


def _fails(*args: str) -> str:
    """Run a command that must fail; return its one-line error."""
    with pytest.raises(SystemExit) as info:
        _run(*args)
    return str(info.value)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "data" not in p.relative_to(root).parts[:1]
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny dense model and a random structure at 0.5 of its MACs, in a scratch working directory."""
    root = tmp_path_factory.mktemp("bad")
    shared = Path(__file__).resolve().parents[1] / "data"
    shared.mkdir(exist_ok=True)  # a clean clone has no data/ yet; the first job fills it
    (root / "data").symlink_to(shared, target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        _run("pretrain", *JOB, "--settings", json.dumps(PRETRAIN), "--out", "dense")
        _run(
            "search",
            *JOB,
            "--method",
            "random",
            "--target",
            0.5,
            "--dense",
            "dense/model.pt",
            "--settings",
            json.dumps(SEARCH),
            "--out",
            "random",
        )
    return root


@pytest.fixture
def work(study, tmp_path, monkeypatch):
    """A fresh copy of the study per test (the damage stays in it); returns it with its files' hashes."""
    w = tmp_path / "w"
    shutil.copytree(study, w, symlinks=True)
    monkeypatch.chdir(w)
    return w


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _finetune(search: str = "random", dense: str = "dense/model.pt", out: str = "ft") -> str:
    return _fails(
        "finetune",
        *JOB,
        "--target",
        0.5,
        "--dense",
        dense,
        "--search",
        search,
        "--settings",
        json.dumps(FINETUNE),
        "--out",
        out,
    )


def _search(dense: str = "dense/model.pt", target: float = 0.5, settings: dict = SEARCH, method: str = "random") -> str:
    return _fails(
        "search",
        *JOB,
        "--method",
        method,
        "--target",
        target,
        "--dense",
        dense,
        "--settings",
        json.dumps(settings),
        "--out",
        "new",
    )


def test_truncated_model_names_the_file_and_loses_nothing(work):
    _truncate(work / "dense" / "model.pt")
    before = _hashes(work)
    msg = _search()
    assert "dense model dense/model.pt is truncated or corrupted" in msg and "rerun the job" in msg
    assert _hashes(work) == before and not (work / "new").exists()


def test_a_foreign_model_file_is_named(work):
    torch.save({"weights": torch.zeros(3)}, work / "other.pt")
    msg = _search(dense="other.pt")
    assert "other.pt is not a passprune model file" in msg and "missing ['arch'" in msg


@pytest.mark.parametrize("name, kind", [("structure.json", "structure"), ("search.json", "search record")])
def test_truncated_search_outputs_are_named(work, name, kind):
    _truncate(work / "random" / name)
    before = _hashes(work)
    msg = _finetune()
    assert f"{kind} random/{name} is truncated or corrupted" in msg
    assert _hashes(work) == before and not (work / "ft" / "metrics.json").exists()


def test_truncated_dense_metrics_are_named(work):
    _truncate(work / "dense" / "metrics.json")
    assert "dense metrics dense/metrics.json is truncated or corrupted" in _finetune()


def test_truncated_metrics_keep_the_previous_summary(work):
    _run("aggregate", "dense/metrics.json", "--out", "summary.csv")
    before = (work / "summary.csv").read_bytes()
    shutil.copy(work / "dense" / "metrics.json", work / "copy.json")
    _truncate(work / "copy.json")
    msg = _fails("aggregate", "dense/metrics.json", "copy.json", "--out", "summary.csv")
    assert "copy.json: not valid JSON" in msg
    assert (work / "summary.csv").read_bytes() == before


def test_a_structure_from_another_architecture_is_named(work):
    s = json.loads((work / "random" / "structure.json").read_text())
    (work / "random" / "structure.json").write_text(json.dumps({**s, "arch": "resnet56"}))
    assert "is for resnet56, not resnet20" in _finetune()


def test_a_structure_from_another_width_is_named(work):
    s = json.loads((work / "random" / "structure.json").read_text())
    first = next(iter(s["group_sizes"]))
    s["group_sizes"][first] *= 2
    (work / "random" / "structure.json").write_text(json.dumps(s))
    msg = _finetune()
    assert "does not fit the dense model dense/model.pt" in msg and first in msg


def test_an_unmeetable_target_is_named_and_writes_nothing(work):
    msg = _search(target=0.01, settings={**SEARCH, "search": {"batch_size": 32, "max_prune_frac": 0.5}})
    assert "0.01" in msg and "max_prune_frac" in msg
    assert not (work / "new" / "structure.json").exists()


@pytest.mark.parametrize(
    "data, expect",
    [
        ({"test_subset": 0.00001}, "data.test_subset=1e-05 leaves the test split empty"),
        ({"train_subset": 10}, "the training split has 10 images, fewer than one batch (64)"),
    ],
)
def test_an_empty_or_too_small_subset_is_named(work, data, expect):
    settings = {**PRETRAIN, "data": {**DATA, **data}}
    assert expect in _fails("pretrain", *JOB, "--settings", json.dumps(settings), "--out", "p")
    assert not (work / "p" / "model.pt").exists()


def test_a_nan_loss_stops_the_job_and_writes_no_model(work):
    settings = {**PRETRAIN, "train": {**PRETRAIN["train"], "lr": 1e12}}
    msg = _fails("pretrain", *JOB, "--settings", json.dumps(settings), "--out", "p")
    assert "lower the learning rate" in msg
    assert not (work / "p" / "model.pt").exists() and not (work / "p" / "metrics.json").exists()


def test_unknown_settings_keys_are_named(work):
    settings = {**PRETRAIN, "train": {**PRETRAIN["train"], "learning_rate": 0.1}}
    msg = _fails("pretrain", *JOB, "--settings", json.dumps(settings), "--out", "p")
    assert "settings train: unknown keys ['learning_rate']" in msg


def test_damaged_dataset_files(tmp_path):
    """A damaged decoded cache is a cache: rebuilt from the raw files. A damaged raw file is named, with the fix."""
    from passprune.data import load_dataset

    repo_raw = Path(__file__).resolve().parents[1] / "data" / "FashionMNIST" / "raw"
    if not repo_raw.is_dir():
        load_dataset("fashion_mnist", repo_raw.parents[1], seed=0, val_size=10, train_subset=10, test_subset=10)
    raw = tmp_path / "FashionMNIST" / "raw"
    shutil.copytree(repo_raw, raw)
    cache = tmp_path / "FashionMNIST" / "decoded.pt"
    cache.write_bytes(b"PK\x03\x04 not a zip")
    d = load_dataset("fashion_mnist", tmp_path, seed=0, val_size=100, train_subset=100, test_subset=100)
    assert len(d.train) == 100 and torch.load(cache, weights_only=True)["train_x"].shape == (60000, 1, 28, 28)
    cache.unlink()
    _truncate(raw / "train-images-idx3-ubyte")
    with pytest.raises(ValueError, match=r"raw files in .*FashionMNIST/raw are truncated or corrupted.*delete that"):
        load_dataset("fashion_mnist", tmp_path, seed=0, val_size=100, train_subset=100, test_subset=100)
