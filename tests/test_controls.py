"""The controls (random_widths, scratch) and the per-run cost accounting, through the library and the CLI.

* random_widths keeps exactly a reference structure's per-group counts (so its MACs) on every registry
  architecture, with other channels; scratch returns the reference's structure and asks for a fresh init.
* Bad references fail with a message naming ``--reference`` and the fix.
* End to end through ``passprune.cli.main`` on a tiny Fashion-MNIST study in a scratch folder: ``--label``,
  search time vs job time, steps/images columns, and scratch's re-initialisation and total budget.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import small_model

from passprune.methods import SearchContext, get_method
from passprune.models import list_models
from passprune.structure import PruningSpace, prune_model

X0 = torch.zeros(1, 1, 28, 28)


def _ctx(model, data, tmp_path, method, target=0.5, seed=0, reference=None, **options):
    space = PruningSpace(model, X0)
    return space, SearchContext(
        model=model,
        space=space,
        data=data,
        target=target,
        options=get_method(method).options(options),
        device=torch.device("cpu"),
        seed=seed,
        workdir=tmp_path,
        batch_size=16,
        reference=reference,
    )


def _reference(model, data, tmp_path, target=0.5, method="pass", arch="x"):
    """A structure.json-like reference (l1's choice, labelled as if it came from ``method``)."""
    space, ctx = _ctx(model, data, tmp_path, "l1", target)
    kept = get_method("l1").fn(ctx).structure
    return {
        "arch": arch,
        "target": target,
        "method": method,
        "base_method": method,
        "group_sizes": {g.id: g.size for g in space.groups},
        "kept": kept,
    }


@pytest.mark.parametrize("arch", list_models())
def test_random_widths_keeps_reference_counts(arch, fmnist_small, tmp_path):
    model = small_model(arch)
    ref = _reference(model, fmnist_small, tmp_path, arch=arch)
    space, ctx = _ctx(model, fmnist_small, tmp_path, "random_widths", reference=ref)
    res = get_method("random_widths").fn(ctx)
    space.validate(res.structure)
    assert space.keep_counts(res.structure) == space.keep_counts(ref["kept"])
    assert space.structure_macs_ratio(res.structure) == pytest.approx(
        space.structure_macs_ratio(ref["kept"]), rel=1e-12
    )
    assert 0.495 <= space.structure_macs_ratio(res.structure) <= 0.5 + 1e-12
    assert res.structure != ref["kept"]
    assert not res.weights_changed and not res.reinit
    assert res.info["search_steps"] == res.info["weight_train_steps"] == 0


def test_random_widths_depends_on_seed(fmnist_small, tmp_path):
    model = small_model("resnet20")
    ref = _reference(model, fmnist_small, tmp_path)
    a = get_method("random_widths").fn(_ctx(model, fmnist_small, tmp_path, "random_widths", seed=1, reference=ref)[1])
    b = get_method("random_widths").fn(_ctx(model, fmnist_small, tmp_path, "random_widths", seed=1, reference=ref)[1])
    c = get_method("random_widths").fn(_ctx(model, fmnist_small, tmp_path, "random_widths", seed=2, reference=ref)[1])
    assert a.structure == b.structure != c.structure


def test_scratch_returns_reference_structure(fmnist_small, tmp_path):
    model = small_model("resnet20")
    ref = _reference(model, fmnist_small, tmp_path)
    space, ctx = _ctx(model, fmnist_small, tmp_path, "scratch", reference=ref)
    res = get_method("scratch").fn(ctx)
    assert res.structure == ref["kept"] and res.reinit and not res.weights_changed
    assert space.keep_counts(res.structure) == space.keep_counts(ref["kept"])


@pytest.mark.parametrize("method", ["random_widths", "scratch"])
def test_bad_reference_is_a_clear_error(method, fmnist_small, tmp_path):
    model = small_model("resnet20")
    with pytest.raises(ValueError, match=r"--reference"):
        get_method(method).fn(_ctx(model, fmnist_small, tmp_path, method)[1])
    other = _reference(small_model("resnet56"), fmnist_small, tmp_path, arch="resnet56")
    with pytest.raises(ValueError, match=r"another architecture.*--arch"):
        get_method(method).fn(_ctx(model, fmnist_small, tmp_path, method, reference=other)[1])
    ref = _reference(model, fmnist_small, tmp_path, target=0.5)
    with pytest.raises(ValueError, match=r"MACs target 0.5.*same --target"):
        get_method(method).fn(_ctx(model, fmnist_small, tmp_path, method, target=0.4, reference=ref)[1])
    # another method's structure (a transfer control hands over e.g. the source's pass_uniform) is used and
    # recorded; a labelled run of the reference method (pass_plr1e-4 of base method pass) too
    other_method = _reference(model, fmnist_small, tmp_path, method="l1")
    res = get_method(method).fn(_ctx(model, fmnist_small, tmp_path, method, reference=other_method)[1])
    assert res.info["reference_method"] == "l1"
    labelled = {**ref, "method": "pass_plr1e-4", "base_method": "pass"}
    res = get_method(method).fn(_ctx(model, fmnist_small, tmp_path, method, reference=labelled)[1])
    assert res.info["reference_method"] == "pass_plr1e-4" and res.info["reference_base_method"] == "pass"


# ----------------------------------------------------------------------------- end to end through the CLI
TINY = {
    "epochs": 1,
    "batch_size": 32,
    "lr": 1e-8,
    "schedule": "constant",
    "augment": False,
    "max_steps_per_epoch": 2,
    "eval_batch_size": 256,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny dense model (1 epoch, 2 steps, lr 1e-8: its weights stay at their init) and the runs."""
    from passprune.cli import main

    root = tmp_path_factory.mktemp("cli")
    common = {
        "data": {"root": str(root / "data"), "val_size": 64, "train_subset": 256, "test_subset": 64},
        "device": "cpu",
        "threads": 1,
        "tracking": {"enabled": False},
    }
    job = ["--dataset", "fashion_mnist", "--arch", "resnet20", "--seed", "0"]
    dense = root / "dense"
    main(
        [
            "pretrain",
            *job,
            "--out",
            str(dense),
            "--settings",
            json.dumps({**common, "model": {"width": 0.5}, "train": TINY}),
        ]
    )
    search_s = {**common, "search": {"batch_size": 32, "max_prune_frac": 0.9}}
    ft_s = json.dumps({**common, "finetune": {**TINY, "bn_recalibration_batches": 1}, "latency": {"enabled": False}})

    def search(method, label=None, ref_path=None, **options):
        out = root / (label or method) / "search"
        argv = [
            "search",
            *job,
            "--method",
            method,
            "--target",
            "0.5",
            "--dense",
            str(dense / "model.pt"),
            "--out",
            str(out),
            "--settings",
            json.dumps({**search_s, "method_options": options}),
        ]
        argv += ["--label", label] if label else []
        argv += ["--reference", str(ref_path)] if ref_path else []
        main(argv)
        return out

    def finetune(name):
        out = root / name
        main(
            [
                "finetune",
                *job,
                "--target",
                "0.5",
                "--dense",
                str(dense / "model.pt"),
                "--search",
                str(out / "search"),
                "--out",
                str(out),
                "--settings",
                ft_s,
            ]
        )
        return json.loads((out / "metrics.json").read_text())

    ref = search("l1", label="l1_ref") / "structure.json"
    search("random_widths", ref_path=ref, reference="l1")
    search("scratch", ref_path=ref, reference="l1")
    search("bn_scale_tp", epochs=1, max_steps_per_epoch=2)
    metrics = {name: finetune(name) for name in ("l1_ref", "random_widths", "scratch", "bn_scale_tp")}
    return root, dense, metrics


def _search_json(root, name):
    return json.loads((root / name / "search" / "search.json").read_text())


def test_label_names_the_run(study):
    root, _, metrics = study
    s = _search_json(root, "l1_ref")
    assert s["method"] == "l1_ref" and s["base_method"] == "l1"
    assert json.loads((root / "l1_ref" / "search" / "structure.json").read_text())["method"] == "l1_ref"
    assert metrics["l1_ref"]["method"] == "l1_ref" and metrics["l1_ref"]["base_method"] == "l1"
    assert metrics["l1_ref"]["method_options"] == {"keep_coupled": True}  # l1 (Li et al.) keeps the residual stream
    assert metrics["l1_ref"]["select_on_val"] is None


def test_search_seconds_is_the_methods_own_time(study):
    root, _, metrics = study
    for name in ("l1_ref", "random_widths", "scratch", "bn_scale_tp"):
        s = _search_json(root, name)
        assert 0 <= s["search_seconds"] < s["job_seconds"], name
        assert metrics[name]["search_seconds"] == s["search_seconds"]
        assert metrics[name]["search_job_seconds"] == s["job_seconds"]


def test_cost_columns(study):
    _, _, metrics = study
    keys = (
        "search_steps",
        "search_images",
        "weight_train_steps",
        "weight_train_images",
        "finetune_steps",
        "finetune_images",
        "total_weight_steps",
        "select_on_val",
    )
    for name, m in metrics.items():
        assert set(keys) <= set(m), name
        assert m["finetune_steps"] == 2 and m["finetune_images"] == 64, name
        assert m["total_weight_steps"] == m["weight_train_steps"] + m["finetune_steps"], name
        assert m["dense_pretrain_steps"] == 2, name
    l1 = metrics["l1_ref"]
    assert l1["search_steps"] == l1["search_images"] == l1["weight_train_steps"] == l1["weight_train_images"] == 0
    bn = metrics["bn_scale_tp"]
    assert bn["weight_train_steps"] == bn["search_steps"] == 2 and bn["weight_train_images"] == 64
    assert bn["start_weights"] == "search"
    assert metrics["random_widths"]["weight_train_steps"] == 0
    assert metrics["random_widths"]["family"] == "control"


def test_scratch_reinitialises_and_trains_the_total_budget(study):
    from passprune.checkpoint import load_dense, load_pruned

    root, dense_dir, metrics = study
    sc = metrics["scratch"]
    assert _search_json(root, "scratch")["weights"] == "scratch" and sc["start_weights"] == "scratch"
    # all its training: the dense model's pretraining steps, then the shared fine-tuning
    assert sc["weight_train_steps"] == sc["dense_pretrain_steps"] == 2
    assert sc["total_weight_steps"] == sc["dense_pretrain_steps"] + sc["finetune_steps"] == 4
    assert len(sc["scratch_history"]) == 1
    # same counts per group as its reference
    assert sc["kept_channels"] == metrics["l1_ref"]["kept_channels"]

    dense, _ = load_dense(dense_dir / "model.pt")

    def first_conv(model):
        return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).weight.detach()

    for name, inherits in (("random_widths", True), ("scratch", False)):
        pruned, ck = load_pruned(root / name / "model.pt")
        dense_slice = first_conv(prune_model(copy.deepcopy(dense).eval(), X0, ck["structure"]))
        w = first_conv(pruned)
        assert w.shape == dense_slice.shape
        # lr 1e-8: weights that inherit the dense ones stay where they were; scratch's are a new init
        assert torch.allclose(w, dense_slice, atol=1e-5) is inherits, name
