"""Sparsity training as its own job, shared by every MACs target (rule ``sparsify``, ``passprune sparsify``).

slimming, DepGraph and the sparsity ``*_tp`` methods train the dense model with a regulariser that never reads the
target, then prune to it. The invariant: a search that starts from the shared training (``--sparse``) writes the
same structure, the same sparsity-trained weights and the same search record (timings and the note naming the
shared folder aside) as the single job that trained for itself, at every target. GReg-1 is not shared, and the
test shows why: its trained weights differ between targets. Planning: one ``sparsify`` job per (dataset, arch,
seed, method, training options), read by every target's and every alike-training label's search; the estimate
counts what that saves.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from passprune import study as S
from passprune.checkpoint import build, save_dense
from passprune.methods import get_method, list_methods
from passprune.settings import JobSettings
from passprune.stages import SearchJob, SparsifyJob, run_search, run_sparsify

REPO = Path(__file__).resolve().parents[1]
SHARED = ("slimming", "depgraph", "bn_scale_tp", "depgraph_tp", "greg_tp")
TARGETS = (0.5, 0.3)
#: Two epochs of three steps: enough for the regulariser to move the weights and for a per-epoch checkpoint.
TRAIN = {"epochs": 2, "max_steps_per_epoch": 3}
#: Timings and the run's provenance: the only record values that may differ between the two paths.
VOLATILE = {"search_seconds", "job_seconds", "sparsity_seconds", "progressive_seconds", "seconds", "provenance"}


# ----------------------------------------------------------------------------- the registry
def test_exactly_the_target_independent_trainings_are_shared():
    shared = {m for m in list_methods() if get_method(m).sparsify is not None}
    assert shared == set(SHARED)
    trains = {m for m in list_methods() if get_method(m).trains_weights}
    assert trains - shared == {"greg"}  # GReg-1's penalty is on the filters chosen at the target's ratio
    for m in SHARED:
        spec = get_method(m)
        assert {"epochs", "lr", "max_steps_per_epoch", "reg"} <= set(spec.sparsify_options) <= set(spec.defaults)
    assert "keep_coupled" not in get_method("slimming").sparsify_options  # pruning options are not the training's
    assert {"steps", "normalizer"}.isdisjoint(get_method("depgraph").sparsify_options)
    assert S.capabilities().shared_sparsity == {
        m: {k: get_method(m).defaults[k] for k in get_method(m).sparsify_options} for m in SHARED
    }


# ----------------------------------------------------------------------------- the stages: same bytes both ways
@pytest.fixture(scope="module")
def dense_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("dense") / "model.pt"
    kwargs = {"num_classes": 10, "in_channels": 1, "width": 0.25}
    torch.manual_seed(0)
    save_dense(path, "resnet20", kwargs, build("resnet20", kwargs), [1, 1, 28, 28])
    return path


def _settings(root: Path, options: dict, search: dict | None = None) -> JobSettings:
    raw = {
        "data": {"root": str(root), "val_size": 100, "train_subset": 300, "test_subset": 100},
        "device": "cpu",
        "search": search or {"batch_size": 32, "max_prune_frac": 0.9},
        "method_options": options,
        "tracking": {"enabled": False},
    }
    return JobSettings.from_dict(json.loads(json.dumps(raw)), "job")


def _search(root: Path, dense: Path, out: Path, method: str, target: float, options: dict, sparse=None) -> Path:
    who = {"stage": "search", "dataset": "fashion_mnist", "arch": "resnet20", "seed": 0, "out": out}
    run_search(
        SearchJob(**who, settings=_settings(root, options), method=method, target=target, dense=dense, sparse=sparse)
    )
    return out


def _sparsify(root: Path, dense: Path, out: Path, method: str, options: dict) -> Path:
    spec = get_method(method)
    training = spec.training_options(options)  # what the workflow hands the job (passprune.study)
    who = {"stage": "sparsify", "dataset": "fashion_mnist", "arch": "resnet20", "seed": 0, "out": out}
    run_sparsify(SparsifyJob(**who, settings=_settings(root, training, {"batch_size": 32}), method=method, dense=dense))
    return out


def _record(path: Path) -> dict:
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if k not in VOLATILE and k != "sparsity_shared"}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj

    return strip(json.loads(path.read_text()))


@pytest.mark.parametrize("method", SHARED)
def test_a_search_from_the_shared_training_equals_the_single_job(method, dense_file, fmnist_root, tmp_path):
    """Two targets: the structure, the sparsity-trained weights and the search record are byte for byte (record:
    value for value, timings aside) what the single job wrote; the weights are one file, linked; the training ran
    once; each search reports its cost as the single job did, and names the shared folder."""
    options = {**TRAIN, **({"steps": 20} if method == "depgraph" else {})}
    sparse = _sparsify(fmnist_root, dense_file, tmp_path / "sparsity", method, options)
    shared_rec = json.loads((sparse / "metrics.json").read_text())
    assert shared_rec["search_steps"] == 2 * 3 and shared_rec["stage"] == "sparsify"
    assert shared_rec["options"] == get_method(method).training_options(options)
    assert not (sparse / "sparsity_ckpt.pt").exists()
    kept = []
    for t in TARGETS:
        alone = _search(fmnist_root, dense_file, tmp_path / f"alone{t}", method, t, options)
        shared = _search(fmnist_root, dense_file, tmp_path / f"shared{t}", method, t, options, sparse=sparse)
        for name in ("structure.json", "search_model.pt"):
            assert (alone / name).read_bytes() == (shared / name).read_bytes(), (method, t, name)
        assert _record(alone / "search.json") == _record(shared / "search.json"), (method, t)
        assert os.path.samefile(shared / "search_model.pt", sparse / "model.pt")  # linked, not trained again
        assert (alone / "search_model.pt").read_bytes() == (sparse / "model.pt").read_bytes()
        rec = json.loads((shared / "search.json").read_text())
        assert rec["info"]["sparsity_shared"] == str(sparse)
        assert rec["search_steps"] == rec["weight_train_steps"] == 6 and rec["weights"] == "search_model.pt"
        assert rec["search_seconds"] >= shared_rec["sparsity_seconds"]  # the shared training counts in its cost
        kept.append(json.loads((shared / "structure.json").read_text())["kept"])
    assert kept[0] != kept[1]  # two targets, two structures: the comparison above is not of one file twice


def test_greg_is_not_shared_because_its_training_depends_on_the_target(dense_file, fmnist_root, tmp_path):
    """GReg-1 penalises the filters chosen for removal at the target's per-layer ratio: trained for two targets,
    its weights differ, so one shared training would be wrong for all but one target."""
    weights, options = [], {**TRAIN, "keep_coupled": False}  # the narrow test net's streams must be prunable
    for t in TARGETS:
        out = _search(fmnist_root, dense_file, tmp_path / f"greg{t}", "greg", t, options)
        weights.append(torch.load(out / "search_model.pt", weights_only=True)["state_dict"])
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    with pytest.raises(ValueError, match="depends on the MACs target"):
        _sparsify(fmnist_root, dense_file, tmp_path / "no", "greg", TRAIN)


def test_a_search_refuses_a_training_that_is_not_its_own(dense_file, fmnist_root, tmp_path):
    sparse = _sparsify(fmnist_root, dense_file, tmp_path / "bn", "bn_scale_tp", TRAIN)
    with pytest.raises(ValueError, match=r"differs from this search's \(\{'method': 'bn_scale_tp'"):
        _search(fmnist_root, dense_file, tmp_path / "d", "depgraph_tp", 0.5, TRAIN, sparse=sparse)
    with pytest.raises(ValueError, match="differs from this search's"):  # same method, other training options
        _search(fmnist_root, dense_file, tmp_path / "b", "bn_scale_tp", 0.5, {**TRAIN, "reg": 1e-3}, sparse=sparse)
    with pytest.raises(ValueError, match="l1_tp starts from no shared sparsity training"):
        _search(fmnist_root, dense_file, tmp_path / "l", "l1_tp", 0.5, {}, sparse=sparse)
    assert not any((tmp_path / d).exists() for d in ("d", "b", "l"))  # refused before anything was written


# ----------------------------------------------------------------------------- planning
def _study(mutate=None):
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["targets"] = [0.5, 0.3]
    if mutate:
        mutate(cfg)
    return S.check(copy.deepcopy(cfg))


def test_one_sparsify_job_per_training_read_by_every_target():
    study = _study()
    jobs = S.jobs(study)
    sparsify = {j.key: j for j in jobs if j.rule == "sparsify"}
    assert sorted(j.method for j in sparsify.values()) == ["bn_scale_tp", "depgraph_tp", "greg_tp"]
    for j in sparsify.values():
        assert j.outputs[0].startswith(f"results/ci-tiny/fashion_mnist/resnet20/seed0/_sparsity/{j.method}/")
        assert j.target is None and set(j.settings) == {"data", "device", "search", "method_options"}
        assert j.settings["search"] == {"batch_size": 32}
    for label in ("bn_scale_tp", "depgraph_tp", "greg_tp"):
        searches = [j for j in jobs if j.rule == "search" and j.run == label]
        assert len(searches) == 2
        (dep,) = {d for j in searches for d in j.deps if d in sparsify}  # both targets read one training
        assert sparsify[dep].method == label
    others = [j for j in jobs if j.stage == "search" and j.method not in ("bn_scale_tp", "depgraph_tp", "greg_tp")]
    assert others and not any(set(j.deps) & set(sparsify) for j in others)
    # its folder is named by a digest of what the training reads: pinned, as the dense models' are
    assert S.sparse_id(study, "fashion_mnist", "bn_scale_tp") == "c62bb79610b9"


def test_labels_that_train_alike_share_one_job_and_greg_never_does():
    def mutate(cfg):
        cfg["methods"].update(depgraph=dict(TRAIN), greg=dict(TRAIN), bn_scale_tp={"epochs": 0})
        cfg["variants"] = {
            "depgraph_mean": {"base": "depgraph", "options": {**TRAIN, "normalizer": "mean"}},  # pruning option only
            "depgraph_reg": {"base": "depgraph", "options": {**TRAIN, "reg": 1e-3}},  # another training
        }

    study = _study(mutate)
    jobs = S.jobs(study)
    dirs = {
        label: S.sparse_dir(study, "fashion_mnist", "resnet20", 0, label) for label in ("depgraph", "depgraph_mean")
    }
    assert dirs["depgraph"] == dirs["depgraph_mean"]
    assert S.sparse_dir(study, "fashion_mnist", "resnet20", 0, "depgraph_reg") != dirs["depgraph"]
    assert sorted(j.method for j in jobs if j.rule == "sparsify") == ["depgraph", "depgraph", "depgraph_tp", "greg_tp"]
    assert not study.shares_sparsity("greg") and not study.shares_sparsity("bn_scale_tp")  # depends on t / epochs 0
    settings = S.job_settings(
        study, "sparsify", dataset="fashion_mnist", method="depgraph", sparse_id=dirs["depgraph"][-12:]
    )
    assert settings["method_options"] == {
        "epochs": 2,
        "lr": 0.01,
        "max_steps_per_epoch": 3,
        "reg": 5e-4,
        "weight_decay": 0.0,
    }
    with pytest.raises(ValueError, match="no method label of the study trains depgraph"):
        S.job_settings(study, "sparsify", dataset="fashion_mnist", method="depgraph", sparse_id="0" * 12)


# ----------------------------------------------------------------------------- the estimate's saving
def test_the_estimate_counts_what_the_shared_training_saves(tmp_path):
    from passprune.estimate import THROUGHPUT, Throughput, estimate, memory_key, render, shared_searches
    from passprune.plan import plan

    tp = Throughput(THROUGHPUT, "cpu")
    for targets in ([0.5], [0.5, 0.3, 0.2]):
        cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
        cfg["targets"] = targets
        path = tmp_path / f"t{len(targets)}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        est = estimate(plan(path), tp, overhead_s=10.0)
        sparsify = [j for j in est["jobs"] if j["rule"] == "sparsify"]
        shared = [j for j in est["jobs"] if j["rule"] == "search" and j["label"] in ("bn_scale_tp", "greg_tp")]
        assert len(sparsify) == 3 and all(j["train_images"] == 3 * 32 for j in sparsify)
        assert shared and all(j["train_images"] == 0 and j["seconds"] == 10.0 for j in shared)  # they only prune
        s = est["shared_sparsity"]
        assert (s["sparsify_jobs"], s["searches"], s["trainings_saved"]) == (
            3,
            3 * len(targets),
            3 * (len(targets) - 1),
        )
        work = sum(j["macs"] for j in sparsify)
        assert s["macs_saved"] == pytest.approx(work * (len(targets) - 1))
        hours = (sum(j["seconds"] for j in sparsify) - 3 * 10.0) * (len(targets) - 1) / 3600 - 3 * 10.0 / 3600
        assert s["hours_saved"] == pytest.approx(hours)
        assert f"{s['sparsify_jobs']} sparsify jobs train once for the {s['searches']} searches" in render(est)
    planned = plan(path)  # peak memory: the training is the sparsify job's; a search from it only evaluates
    shared = shared_searches(planned)
    regimes = {(j.rule, j.key in shared): memory_key(j, j.key in shared)[3] for j in planned.jobs if j.stage}
    assert regimes[("sparsify", False)] == "train" and regimes[("search", True)] == "eval"


@pytest.mark.parametrize("method", SHARED)
def test_the_shared_training_runs_under_the_device_contract(method, tmp_path):
    """The sparsify stage hands the method its model and example inputs on the job's device, as the search stage
    does: a model elsewhere is refused before a Torch-Pruning pruner traces it."""
    from conftest import small_model

    from passprune.methods import DeviceContractError, SearchContext
    from passprune.structure import PruningSpace

    model = small_model("resnet20")
    spec = get_method(method)
    ctx = SearchContext(
        model=model,
        space=PruningSpace(model, torch.zeros(1, 1, 28, 28)),
        data=None,
        target=None,
        options=spec.training_options({}),
        device=torch.device("meta"),
        seed=0,
        workdir=tmp_path,
    )
    with pytest.raises(DeviceContractError, match="ctx.device is meta"):
        spec.run_sparsify(ctx)
