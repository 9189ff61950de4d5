"""`passprune prefetch` (what a config needs, fetched and verified; jobs never download) and `passprune estimate`
(jobs per rule and device-hours), on a small config planned by passprune.study (the jobs and settings the rules
run; tests/test_config.py checks that Snakemake plans the same).

No network here: the missing-file report, the checksum checks and the offline failure of a download run for
real; the one download that works offline is Fashion-MNIST from Debian's package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from passprune.datasizes import split_sizes, steps_per_epoch
from passprune.estimate import THROUGHPUT, GpuThroughput, Throughput, estimate, render
from passprune.plan import plan
from passprune.prefetch import READY, dataset_item, hub_hash_prefix, needs, prefetch, verify_hub_file, weights_item

REPO = Path(__file__).resolve().parents[1]


def small_config(root: Path) -> dict:
    """Three datasets (downloadable in memory, manual, on disk via Debian), one ImageNet-pretrained arch, one method
    of each cost kind (PASS steps from epochs, sparsity learning, a weight criterion)."""
    train = {"epochs": 2, "batch_size": 64, "lr": 0.01, "schedule": "cosine", "augment": False}
    return {
        "study": "prefetch-estimate",
        "device": "cpu",
        "data": {
            "root": str(root / "data"),
            "val_size": 200,
            "train_subset": 1000,
            "test_subset": 500,
            "image_size": None,
            "num_workers": 0,
        },
        "datasets": ["cifar10", "tiny_imagenet", "fashion_mnist"],
        "dataset_overrides": {"cifar10": {"image_size": 64}},
        "archs": ["resnet18"],
        "seeds": [0],
        "targets": [0.5],
        "pretrain": {"pretrained": True, "weights_dir": str(root / "weights"), "train": train},
        "finetune": {**train, "bn_recalibration_batches": 2},
        "search": {"batch_size": 32, "max_prune_frac": 0.9, "epochs": 1},
        "methods": {"pass": {}, "random": {}, "slimming": {"epochs": 1}},
        "latency": {"enabled": True, "batch_sizes": [1, 8], "repeats": 3},
        "tracking": {"enabled": False, "uri": "sqlite:///results/mlflow.db", "experiment": "x"},
        "resources": {
            s: {"threads": 1, "mem_mb": 2000, "runtime": 10, "gpu": 0} for s in ("pretrain", "search", "finetune")
        },
    }


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(small_config(root), sort_keys=False))
    return root, path, plan(path)


# ----------------------------------------------------------------------------- jobs never download
def test_a_job_missing_weights_fails_at_once_naming_the_file(tmp_path):
    from passprune.models import build_model
    from passprune.models.imagenet import weights_cache_path

    with pytest.raises(RuntimeError) as err:
        build_model("resnet18", 10, pretrained=True, weights_dir=str(tmp_path))
    msg = str(err.value)
    assert weights_cache_path("resnet18", str(tmp_path)) in msg and "passprune prefetch" in msg
    assert "is missing" in msg and "failed" not in msg  # no download was tried
    assert os.listdir(tmp_path) == []


def test_a_job_missing_data_fails_at_once_naming_the_place(tmp_path):
    from passprune.data import DatasetNotFoundError, load_dataset

    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "passprune prefetch" in msg
    assert "download attempt failed" not in msg
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- prefetch
def test_prefetch_needs_what_the_jobs_read(small):
    root, _, plan = small
    datasets, weights = needs(plan.jobs)
    assert datasets == [(d, str(root / "data")) for d in ("cifar10", "fashion_mnist", "tiny_imagenet")]
    assert weights == [("resnet18", str(root / "weights"))]


def test_prefetch_check_reports_what_is_missing(small):
    root, _, plan = small
    items = {i.name: i for i in prefetch(plan.jobs, download=False)}
    assert items["cifar10"].status == "missing" and "cifar-10-python.tar.gz" in items["cifar10"].detail
    assert items["tiny_imagenet"].status == "manual" and "tiny-imagenet-200.zip" in items["tiny_imagenet"].detail
    assert items["fashion_mnist"].status == "missing"
    assert items["resnet18"].status == "missing"
    assert items["resnet18"].path == str(root / "weights" / "resnet18-f37072fd.pth")
    assert not (root / "data").exists() and not (root / "weights").exists(), "--check must not write anything"


def test_prefetch_downloads_what_it_can_and_reports_offline_failures(tmp_path):
    fm = dataset_item("fashion_mnist", tmp_path, download=True)  # Debian's copy: works offline
    assert fm.status == "downloaded" and "debian" in fm.detail
    assert dataset_item("fashion_mnist", tmp_path, download=True).status == "ok"  # the second time: nothing to do
    cifar = dataset_item("cifar10", tmp_path, download=True)  # no internet here: torchvision's download fails
    assert cifar.status == "failed" and "download attempt failed" in cifar.detail
    w = weights_item("resnet18", str(tmp_path / "w"), download=True)
    assert w.status == "failed" and "download.pytorch.org" in w.detail
    assert not Path(w.path).exists()


def test_prefetch_verifies_checksums(tmp_path):
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "data_batch_1").write_bytes(b"not a cifar batch")
    bad = dataset_item("cifar10", tmp_path, download=True)
    assert bad.status == "corrupt" and "data_batch_1" in bad.detail  # reported, never silently replaced
    ckpt = Path(tmp_path / "w" / "resnet18-f37072fd.pth")
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"truncated")
    assert weights_item("resnet18", str(ckpt.parent), download=True).status == "corrupt"
    import hashlib

    good = tmp_path / f"net-{hashlib.sha256(b'weights').hexdigest()[:8]}.pth"
    good.write_bytes(b"weights")
    assert hub_hash_prefix(good) == hashlib.sha256(b"weights").hexdigest()[:8]
    assert verify_hub_file(good)[0] and not verify_hub_file(ckpt)[0]
    assert "ok" in READY and "corrupt" not in READY


# ----------------------------------------------------------------------------- estimate
def test_throughput_scales_by_macs():
    tp = Throughput(THROUGHPUT, "cpu")
    rec = tp.entry["archs"]["resnet18"][-1]
    r = rec["resolution"]
    rate = Throughput.images_per_s(rec, "train")
    assert rate == rec.get("train_images_per_cpu_s", rec["train_images_per_s"])
    assert tp.seconds_per_image("resnet18", r, "train") == pytest.approx(1 / rate)
    ratio = tp.macs("resnet18", 2 * r) / rec["macs_per_image"]
    assert 3.5 < ratio < 4.5  # a CNN's MACs grow with the pixel count
    assert tp.seconds_per_image("resnet18", 2 * r, "train") == pytest.approx(ratio / rate)
    assert "CPU-derived" in tp.describe()


def test_estimate_is_jobs_times_per_job_cost(small):
    root, _, plan = small
    tp = Throughput(THROUGHPUT, "cpu")
    est = estimate(plan, tp, overhead_s=10.0)
    assert {r: v["jobs"] for r, v in est["rules"].items()} == plan.counts
    for rule, r in est["rules"].items():
        jobs = [j for j in est["jobs"] if j["rule"] == rule]
        assert r["hours"] == pytest.approx(sum(j["seconds"] for j in jobs) / 3600)
    assert est["total_hours"] == pytest.approx(sum(j["seconds"] for j in est["jobs"]) / 3600)
    cfg = small_config(root)
    # one dense model, by hand: epochs x full batches x batch training images, val every epoch, test once
    n = split_sizes("cifar10", 200, 1000, 500)
    t = cfg["pretrain"]["train"]
    train = t["epochs"] * steps_per_epoch(n["train"], t["batch_size"]) * t["batch_size"]
    ev = t["epochs"] * n["val"] + n["test"]
    job = next(j for j in est["jobs"] if j["rule"] == "pretrain" and j["dataset"] == "cifar10")
    assert (job["train_images"], job["eval_images"], job["resolution"]) == (train, ev, 64)
    assert job["seconds"] == pytest.approx(
        10.0 + train * tp.seconds_per_image("resnet18", 64, "train") + ev * tp.seconds_per_image("resnet18", 64, "eval")
    )
    # PASS: search.epochs -> steps of the search batch; weight criteria (random) cost only the start-up
    pass_job = next(j for j in est["jobs"] if j["rule"] == "search_pass" and j["dataset"] == "cifar10")
    assert pass_job["train_images"] == (n["train"] // 32) * 32
    assert all(j["seconds"] == 10.0 for j in est["jobs"] if j["label"] == "random" and j["rule"] == "search")
    # a pruned net's fine-tuning costs the target's share of the dense per-image cost
    fine = next(
        j for j in est["jobs"] if j["rule"] == "finetune" and j["dataset"] == "cifar10" and j["label"] == "pass"
    )
    assert fine["train_images"] == train


def test_estimate_command_prints_and_writes(small, tmp_path):
    _, path, plan = small
    out = tmp_path / "est.json"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "passprune"), "estimate", "--configfile", str(path), "--json", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CPU-derived" in proc.stdout and "search_pass" in proc.stdout
    est = json.loads(out.read_text())
    assert {r: v["jobs"] for r, v in est["rules"].items()} == plan.counts
    help_ = subprocess.run(
        [str(Path(sys.executable).parent / "passprune"), "prefetch", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert help_.returncode == 0 and "--check" in help_.stdout


def test_estimate_counts_only_what_a_workdir_still_needs(small, tmp_path):
    """--workdir: a dense model already there is neither counted nor costed; its dependants still are."""
    _, path, planned = small
    dense = next(j for j in planned.jobs if j.rule == "pretrain" and j.dataset == "cifar10")
    for out in dense.outputs:
        (tmp_path / out).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / out).write_text("")
    rest = plan(path, workdir=tmp_path)
    assert rest.counts == {**planned.counts, "pretrain": planned.counts["pretrain"] - 1}
    assert dense not in rest.jobs and len(rest.jobs) == len(planned.jobs) - 1


def test_tools_name_every_problem_of_a_bad_config(small, tmp_path):
    root, _, _ = small
    cfg = small_config(root)
    cfg["targets"] = [0]
    cfg["methods"]["random_widths"] = {"reference": "l1"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    exe = str(Path(sys.executable).parent / "passprune")
    for tool in ("estimate", "prefetch"):
        proc = subprocess.run([exe, tool, "--configfile", str(bad)], capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert f"passprune {tool}: invalid config" in proc.stderr and "['targets'][0]" in proc.stderr, proc.stderr


def test_the_scratch_control_costs_its_pretraining_replay_too():
    """scratch retrains the dense model's budget before the shared fine-tuning: its fine-tuning job counts both
    (the lookup once keyed on a label that grid runs never carry, so the replay was silently dropped)."""
    est = estimate(plan("config/config.yaml"), Throughput(THROUGHPUT, "cpu"), overhead_s=0.0)
    fine = {j["label"]: j for j in est["jobs"] if j["rule"] == "finetune" and j["dataset"] == "fashion_mnist"}
    dense = next(j for j in est["jobs"] if j["rule"] == "pretrain" and j["dataset"] == "fashion_mnist")
    assert fine["scratch"]["train_images"] == fine["pass"]["train_images"] + dense["train_images"]


def test_gpu_hours_are_images_over_the_scaled_gpu_rate_plus_start_up(small):
    """The GPU column: a dense pretraining job's images at the published ResNet-50 rate of the kind, scaled by the
    MACs ratio to resnet18 at 64 px, plus the start-up; the CPU column is unchanged by asking for it."""
    root, _, planned = small
    cpu = Throughput(THROUGHPUT, "cpu")
    gpu = GpuThroughput("v100")
    est = estimate(planned, cpu, overhead_s=10.0, gpu=gpu)
    plain = estimate(planned, cpu, overhead_s=10.0)
    assert [j["seconds"] for j in est["jobs"]] == [j["seconds"] for j in plain["jobs"]]
    table = json.loads((REPO / "bench" / "gpu_throughput_defaults.json").read_text())
    spec = table["kinds"]["v100"]
    ratio = cpu.macs("resnet18", 64) / cpu.macs("resnet50", 224)
    assert 0.01 < ratio < 0.2
    job = next(j for j in est["jobs"] if j["rule"] == "pretrain" and j["dataset"] == "cifar10")
    by_hand = 10.0 + job["train_images"] * ratio / spec["train_images_per_s"]
    by_hand += job["eval_images"] * ratio / spec["eval_images_per_s"]
    assert job["gpu_seconds"] == pytest.approx(by_hand)
    assert job["gpu_seconds"] < job["seconds"]
    for rule, r in est["rules"].items():
        mine = [j["gpu_seconds"] for j in est["jobs"] if j["rule"] == rule]
        assert r["gpu_hours"] == pytest.approx(sum(mine) / 3600)
    text = render(est)
    assert "GPU-hours" in text.splitlines()[4] and "core-hours" in text.splitlines()[4]
    assert table["source"] in text and "bf16" in text and "v100" in text


def test_estimate_prints_peak_memory_per_rule_against_the_card(small):
    """Peak GiB per rule from passprune.memory, flagged against the card: the small config's jobs fit 40 GB and do
    not fit a card of 0.1 GB."""
    _, _, planned = small
    from passprune.estimate import memory_key
    from passprune.memory import job_memory

    cpu, gpu = Throughput(THROUGHPUT, "cpu"), GpuThroughput("a100")
    est = estimate(planned, cpu, overhead_s=10.0, gpu=gpu, gpu_memory_gb=40.0)
    rules = est["rules"]
    assert {"pretrain", "search_pass", "search", "finetune"} <= {r for r, v in rules.items() if "peak_gib" in v}
    pre = next(j for j in planned.jobs if j.rule == "pretrain" and j.dataset == "cifar10")
    assert memory_key(pre) == ("resnet18", 64, 64, "train", True)
    big = [j for j in planned.jobs if j.rule == "pretrain" and j.dataset != "fashion_mnist"]  # 28 px: not counted
    peak = max(job_memory(*memory_key(j)).peak_gib for j in big)
    assert rules["pretrain"]["peak_gib"] == pytest.approx(peak)
    pass_job = next(j for j in planned.jobs if j.rule == "search_pass")
    assert memory_key(pass_job)[3] == "pass"
    text = render(est)
    row = next(line for line in text.splitlines() if line.startswith("pretrain "))
    assert row.rstrip().endswith("fits") and "does not fit" not in text
    tiny = render({**est, "gpu_memory_gb": 0.1})
    row = next(line for line in tiny.splitlines() if line.startswith("pretrain "))
    assert row.rstrip().endswith("does not fit 0.1 GB")
