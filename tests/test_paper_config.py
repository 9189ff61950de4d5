"""config/paper.yaml is the paper's protocol and config/cifar-scratch.yaml the from-scratch CIFAR setting, as
the study plans them (passprune.study, which the rules call; tests/test_config.py checks that Snakemake plans the
paper grid alike): job counts per rule, and the resolved settings every job is handed (per-dataset batch sizes,
ImageNet starts at 224 px, one fine-tuning budget, PASS's 30 search epochs converted to steps per dataset).

In-process (:func:`passprune.plan.plan`, about a second for the paper grid); the per-dataset override rules are
checked on small variants of config/test.yaml.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest
import yaml

from passprune.datasizes import SIZES, split_sizes
from passprune.plan import plan as plan_config

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "config" / "paper.yaml"
SCRATCH = REPO / "config" / "cifar-scratch.yaml"
PASS_FAMILY = {"pass", "pass_noprompt", "pass_norecur", "pass_uniform", "pass_nostats"}
#: Methods whose sparsity training does not depend on the target: trained once (rule sparsify); GReg-1 is not one.
SHARED_SPARSITY = {"slimming", "depgraph", "bn_scale_tp", "depgraph_tp", "greg_tp"}
#: VPNs' batch sizes (docs/paper.md §2.2)
VPNS_BATCH = {"cifar10": 256, "cifar100": 256, "tiny_imagenet": 256, "food101": 256, "dtd": 64, "flowers102": 128}


@pytest.fixture(scope="module")
def paper():
    return yaml.safe_load(PAPER.read_text()), plan_config(PAPER)


@pytest.fixture(scope="module")
def scratch():
    return yaml.safe_load(SCRATCH.read_text()), plan_config(SCRATCH)


def expected_counts(cfg: dict) -> dict[str, int]:
    """The DAG's shape from the config: every (dataset, arch, seed) x method x target, plus transfer runs whose
    sources are grid datasets (so their searches are the grid's)."""
    n_grid = len(cfg["datasets"]) * len(cfg["archs"]) * len(cfg["seeds"])
    n_t = len(cfg["targets"])
    n_pass = sum(m in PASS_FAMILY for m in cfg["methods"])
    n_other = len(cfg["methods"]) - n_pass
    n_shared = sum(m in SHARED_SPARSITY and (o or {}).get("epochs", 1) > 0 for m, o in cfg["methods"].items())
    per_kind = {
        k: sum(k in t["kinds"] for t in cfg["transfer"]) * len(cfg["seeds"]) * n_t for k in ("structure", "hypernet")
    }
    assert all(t["source"] in cfg["datasets"] and len(t["archs"]) == 1 for t in cfg["transfer"])
    return {
        "pretrain": n_grid,
        "search_pass": n_grid * n_pass * n_t,
        "search": n_grid * n_other * n_t,
        "sparsify": n_grid * n_shared,  # one sparsity training per (dataset, arch, seed), shared by the targets
        "finetune": n_grid * len(cfg["methods"]) * n_t,
        "finetune_transfer": per_kind["hypernet"],  # the hypernet kind's searches are fine-tuned by it
        "transfer_hypernet_search": per_kind["hypernet"],
        "transfer_structure": per_kind["structure"],
        "aggregate": 1,
        "report": 1,
        "all": 1,
    }


def pass_steps(dataset: str, batch: int, epochs: int = 30, val_size: float = 0.1) -> int:
    return epochs * (split_sizes(dataset, val_size)["train"] // batch)


# ----------------------------------------------------------------------------- the paper protocol
def test_paper_config_is_the_protocol(paper):
    cfg, _ = paper
    assert cfg["datasets"] == ["cifar10", "cifar100", "tiny_imagenet", "food101", "dtd", "flowers102"]  # Q17
    assert cfg["archs"] == ["resnet18", "resnet34", "resnet50"]
    assert cfg["targets"] == [0.7, 0.5, 0.35, 0.25] and cfg["seeds"] == [7, 9, 17]  # Q18, Q22
    assert PASS_FAMILY <= set(cfg["methods"])
    assert {"l1", "fpgm", "taylor", "slimming", "greg", "depgraph"} <= set(cfg["methods"])  # the published ones
    assert not any(m.endswith("_tp") for m in cfg["methods"])


def test_paper_plans_the_expected_jobs(paper):
    cfg, plan = paper
    assert plan.counts == expected_counts(cfg)
    assert plan.counts["finetune"] == 54 * 12 * 4 and plan.counts["finetune_transfer"] == 36
    assert plan.counts["sparsify"] == 54 * 2  # slimming and depgraph, once for all 4 targets (greg: in each search)
    assert sum(plan.counts.values()) == 5457  # 5349 before the shared sparsity training
    assert Counter(j.rule for j in plan.jobs) == {
        r: n for r, n in plan.counts.items() if r not in ("aggregate", "report", "all")
    }


def test_paper_dense_start_is_imagenet_at_224_with_vpns_batches(paper):
    """Q14/Q16: every dense model = torchvision ImageNet weights + a new head, 30 epochs of SGD 0.01 at 224 px."""
    _, plan = paper
    pretrain = [j for j in plan.jobs if j.stage == "pretrain"]
    assert {(j.dataset, j.arch) for j in pretrain} == {
        (d, a) for d in VPNS_BATCH for a in ("resnet18", "resnet34", "resnet50")
    }
    for j in pretrain:
        s = j.settings
        assert s["model"]["pretrained"] is True and s["model"]["width"] == 1.0, j
        assert s["data"]["image_size"] == 224
        t = s["train"]
        assert (t["epochs"], t["lr"], t["momentum"], t["weight_decay"], t["schedule"]) == (
            30,
            0.01,
            0.9,
            1e-4,
            "cosine",
        )
        assert t["batch_size"] == VPNS_BATCH[j.dataset], (j.dataset, t)


def test_paper_one_finetuning_budget_per_dataset(paper):
    """Every method (and transfer run) of a dataset gets the same fine-tuning settings: 30 epochs of SGD 0.01 at
    the dataset's VPNs batch size."""
    _, planned = paper
    budgets: dict[str, set] = {}
    for j in planned.jobs:
        if j.stage == "finetune":
            budgets.setdefault(j.dataset, set()).add(repr(sorted(j.settings["finetune"].items())))
    assert set(budgets) == set(VPNS_BATCH)
    for d, seen in budgets.items():
        assert len(seen) == 1, f"{d}: {len(seen)} different fine-tuning budgets"
    for j in (j for j in planned.jobs if j.stage == "finetune"):
        t = j.settings["finetune"]
        assert (t["epochs"], t["lr"], t["batch_size"]) == (30, 0.01, VPNS_BATCH[j.dataset])


def test_paper_pass_searches_30_epochs_per_dataset(paper):
    """search.epochs: 30 becomes PASS's steps per dataset (full batches of its training split at its batch size);
    the jobs' search section carries the batch size, never the workflow-only epochs."""
    _, plan = paper
    searches = [j for j in plan.jobs if j.stage == "search"]
    for j in searches:
        assert j.settings["search"] == {"batch_size": VPNS_BATCH[j.dataset], "max_prune_frac": 0.9}
    pass_jobs = [j for j in searches if j.method in PASS_FAMILY]
    assert len(pass_jobs) == 1080
    for j in pass_jobs:
        o = j.settings["method_options"]
        assert o["steps"] == pass_steps(j.dataset, VPNS_BATCH[j.dataset]), (j.dataset, o)
        assert {k: o[k] for k in ("lr", "prompt_lr", "hidden", "embed", "prompt_width")} == {
            "lr": 1e-3,
            "prompt_lr": 1e-4,
            "hidden": 256,
            "embed": 256,
            "prompt_width": 16,
        }  # docs/paper.md §2.4
    steps = {j.dataset: j.settings["method_options"]["steps"] for j in pass_jobs}
    assert steps == {
        "cifar10": 30 * 175,
        "cifar100": 30 * 175,
        "tiny_imagenet": 30 * 351,
        "food101": 30 * 266,
        "dtd": 30 * 52,
        "flowers102": 30 * 14,
    }
    others = [j for j in searches if j.method not in PASS_FAMILY | {"pass_hypertransfer"}]
    assert others and all("steps" not in j.settings["method_options"] for j in others)


# ----------------------------------------------------------------------------- CIFAR from scratch
def test_cifar_scratch_plans_cifar_networks_from_scratch(scratch):
    cfg, plan = scratch
    assert plan.counts == expected_counts(cfg)
    assert set(cfg["archs"]) == {"resnet56", "resnet18_cifar", "vgg16_bn"}
    for j in plan.jobs:
        assert j.settings["data"]["image_size"] is None  # native 32 px
        if j.stage == "pretrain":
            assert j.settings["model"]["pretrained"] is False
            assert (j.settings["train"]["epochs"], j.settings["train"]["lr"]) == (200, 0.1)
        if j.stage == "finetune":
            t = j.settings["finetune"]
            assert (t["epochs"], t["lr"], t["batch_size"]) == (
                100,
                0.01,
                128,
            )
        if j.stage == "search" and j.method in PASS_FAMILY:
            assert j.settings["method_options"]["steps"] == pass_steps(j.dataset, 128) == 30 * 351


# ----------------------------------------------------------------------------- the override rules, on test.yaml
def _small(tmp_path: Path, mutate) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg = copy.deepcopy(cfg)
    mutate(cfg)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_dataset_overrides_reach_each_stage(tmp_path):
    """batch_size applies to all three stages; a stage's own section wins over it; other datasets keep the study's."""

    def mutate(cfg):
        cfg["search"]["epochs"] = 2
        for m in PASS_FAMILY & set(cfg["methods"]):  # the length comes from the epochs now
            cfg["methods"][m] = {k: v for k, v in (cfg["methods"][m] or {}).items() if k != "steps"}
        cfg["dataset_overrides"] = {
            "fashion_mnist": {
                "train_subset": 1000,
                "batch_size": 50,
                "pretrain": {"epochs": 3, "lr": 0.2},
                "finetune": {"batch_size": 25},
                "search": {"max_prune_frac": 0.5},
            }
        }

    cfg_path = _small(tmp_path, mutate)
    cfg = yaml.safe_load(cfg_path.read_text())
    by = {(j.stage, j.dataset, j.method): j.settings for j in plan_config(cfg_path).jobs}
    pre = by[("pretrain", "fashion_mnist", None)]
    assert pre["train"] == {**cfg["pretrain"]["train"], "batch_size": 50, "epochs": 3, "lr": 0.2}
    assert pre["data"]["train_subset"] == 1000 and "batch_size" not in pre["data"] and "pretrain" not in pre["data"]
    fine = next(s for (st, d, _), s in by.items() if st == "finetune" and d == "fashion_mnist")
    assert fine["finetune"] == {**cfg["finetune"], "batch_size": 25}
    srch = by[("search", "fashion_mnist", "pass")]
    assert srch["search"] == {"batch_size": 50, "max_prune_frac": 0.5}
    n = split_sizes("fashion_mnist", cfg["data"]["val_size"], 1000)["train"]
    assert srch["method_options"]["steps"] == 2 * (n // 50)
    other = by[("pretrain", "fashion_mnist_a", None)]  # the transfer datasets: no overrides
    assert other["train"] == cfg["pretrain"]["train"]
    assert by[("search", "fashion_mnist_a", "pass")]["method_options"]["steps"] == 2 * (
        split_sizes("fashion_mnist_a", cfg["data"]["val_size"], cfg["data"]["train_subset"])["train"]
        // cfg["search"]["batch_size"]
    )


# ----------------------------------------------------------------------------- the size table
def test_every_registered_dataset_has_sizes():
    from passprune.data import list_datasets

    assert sorted(SIZES) == list_datasets(), "add the new dataset's official sizes to pass/datasizes.py"


def test_sizes_match_the_real_loader():
    """Fashion-MNIST is on disk (Debian package): the table and the carve rule equal what load_dataset builds."""
    from passprune.data import load_dataset

    for name, kw in [
        ("fashion_mnist", {"val_size": 0.1}),
        ("fashion_mnist_b", {"val_size": 300, "train_subset": 0.25, "test_subset": 700}),
    ]:
        b = load_dataset(name, REPO / "data", seed=0, **kw)
        want = split_sizes(name, kw["val_size"], kw.get("train_subset"), kw.get("test_subset"))
        assert (len(b.train), len(b.val), len(b.test)) == (want["train"], want["val"], want["test"]), name
        assert b.image_size == SIZES[name].image_size and b.num_classes == SIZES[name].num_classes
