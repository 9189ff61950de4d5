"""``passprune estimate``: what a config costs before it is submitted -- jobs per rule and device-hours.

How: the jobs are the study's (:mod:`passprune.plan`, from :mod:`passprune.study`, which the rules call for the
same settings), each with its resolved settings;
each job's work is counted in images from those settings and the dataset's split sizes (:mod:`passprune.datasizes`):

* pretrain: ``epochs x full batches x batch`` training images (forward + backward) on the dense net, plus the
  validation split every epoch and the test split once (forward);
* sparsify: a sparsity-learning baseline's ``epochs`` of training, once per (dataset, arch, seed, method, training
  options), shared by every target's search of the method (slimming, DepGraph, the sparsity ``*_tp`` methods);
* search: PASS and its ablations ``steps x batch`` training images through the (masked) dense net, plus the
  BN re-estimation and the final validation; GReg (whose training depends on the target) its ``epochs`` of
  training; a search from a shared sparsity training only prunes; Taylor its ``batches``; weight criteria (L1,
  FPGM, random) nothing worth counting;
* finetune (and structure transfer): the fine-tuning budget on the pruned net, whose cost per image is the dense
  one times the MACs target; the scratch control also replays the dense model's pretraining epochs; plus the
  evaluations before / after and the latency runs;

then turned into seconds with the images/s that ``bench/throughput.py`` measured for that architecture, scaled to
the job's resolution by the ratio of conv+linear MACs per image, plus a fixed start-up time per job. The saving of
the shared sparsity training is what the same searches would cost if each trained for itself (the single-job
path): every shared search's training counted again, less the ``sparsify`` jobs' (their start-up included). Every figure
says which device it comes from: CPU-derived hours are what this repository ships (no GPU was lent when it was
written) and are an upper bound for a GPU; ``python bench/throughput.py --device cuda`` on a GPU node adds GPU
figures, which the estimate then prefers.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .datasizes import size_of, split_sizes, steps_per_epoch
from .settings import JobSettings, TrainSettings

THROUGHPUT = Path(__file__).resolve().parents[1] / "bench" / "throughput.json"
#: Published GPU images/s per kind (NVIDIA Deep Learning Examples, cited in the file) and a measured override.
GPU_DEFAULTS = THROUGHPUT.parent / "gpu_throughput_defaults.json"
GPU_MEASURED = THROUGHPUT.parent / "figures" / "gpu.json"
#: Images/s one data-loader worker decodes and augments (JPEG at 224 px): an assumption, stated; a job's images
#: take at least 1 / (workers x this) seconds each, whatever the GPU could do.
LOADER_IMAGES_PER_WORKER_S = 250.0
#: Families whose search length is ``steps`` of the search batch (PASS, its ablations, hypernetwork transfer).
STEP_FAMILIES = ("pass", "pass-ablation", "pass-transfer")
#: Seconds every job spends outside its images (interpreter, data and model loading): an assumption, stated.
DEFAULT_OVERHEAD_S = 60.0
#: Rules that run no model (summary table, report): counted as jobs, costed at zero device time.
NO_MODEL_RULES = ("aggregate", "report", "all")


@dataclass(frozen=True)
class Work:
    """A job's images: ``train`` (forward + backward) and ``eval`` (forward), both on a net of ``macs_factor``
    times the dense MACs (1 = dense), at ``resolution`` px."""

    train: float
    eval: float
    macs_factor: float
    resolution: int


@dataclass
class JobCost:
    rule: str
    dataset: str
    arch: str
    label: str | None
    target: float | None
    resolution: int
    train_images: float
    eval_images: float
    seconds: float
    macs: float  # multiply-accumulates: forward MACs per image x (3 per training image, 1 per evaluated image)
    gpu_seconds: float | None = None  # the same images at the GPU model's images/s, plus the start-up


class Throughput:
    """Seconds per image of an architecture at a resolution, from one device's entry of bench/throughput.json."""

    def __init__(self, path: str | Path = THROUGHPUT, device: str | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; measure it: python bench/throughput.py [--device cuda]")
        devices = json.loads(path.read_text()).get("devices", {})
        if not devices:
            raise ValueError(f"{path} holds no measurements; run python bench/throughput.py")
        self.device = device or ("cuda" if "cuda" in devices else "cpu" if "cpu" in devices else sorted(devices)[0])
        if self.device not in devices:
            raise KeyError(
                f"{path} has no {self.device!r} measurements (it has {sorted(devices)}); run "
                f"python bench/throughput.py --device {self.device}"
            )
        self.entry = devices[self.device]
        self.path = path
        self._macs: dict[tuple[str, int], float] = {}

    def describe(self) -> str:
        m = self.entry.get("machine", {})
        what = m.get("gpu") or f"{m.get('cpu', '?')}, {self.entry.get('threads')} thread(s)"
        kind = "GPU" if self.device == "cuda" else "CPU-derived core-hours (no GPU was measured; not GPU-hours)"
        return f"{kind}: {what}, measured {self.entry.get('measured_at', '?')} ({self.path.name})"

    def _record(self, arch: str, resolution: int) -> dict[str, Any]:
        recs = self.entry.get("archs", {}).get(arch)
        if not recs:
            raise KeyError(
                f"{self.path}: no {self.device} throughput for {arch!r}; run "
                f"python bench/throughput.py --device {self.device} --archs {arch}"
            )
        return min(recs, key=lambda r: abs(math.log(r["resolution"] / resolution)))  # the nearest resolution

    def macs(self, arch: str, resolution: int) -> float:
        """Conv+linear MACs per image (100 classes, as measured), counted by passprune.structure."""
        key = (arch, resolution)
        if key not in self._macs:
            import torch

            from .models import build_model
            from .structure import conv_linear_macs

            self._macs[key] = conv_linear_macs(
                build_model(arch, num_classes=100), torch.zeros(1, 3, resolution, resolution)
            )
        return self._macs[key]

    def seconds_per_image(self, arch: str, resolution: int, mode: str) -> float:
        """1 / measured images/s, times the MACs ratio between ``resolution`` and the measured one."""
        rec = self._record(arch, resolution)
        ratio = 1.0 if rec["resolution"] == resolution else self.macs(arch, resolution) / rec["macs_per_image"]
        return ratio / self.images_per_s(rec, mode)

    @staticmethod
    def images_per_s(rec: dict[str, Any], mode: str) -> float:
        """Per second of CPU time where measured (a shared CPU distorts wall time), else per wall second."""
        return rec.get(f"{mode}_images_per_cpu_s") or rec[f"{mode}_images_per_s"]


class GpuThroughput(Throughput):
    """Seconds per image on one GPU: measured per arch in bench/figures/gpu.json where it exists, else the
    published ResNet-50 figure of the GPU kind scaled by MACs (same interface as :class:`Throughput`)."""

    def __init__(self, kind: str | None = None, defaults: Path = GPU_DEFAULTS, measured: Path = GPU_MEASURED) -> None:
        table = json.loads(Path(defaults).read_text())
        self.device, self.path, self._macs = "cuda", Path(defaults), {}
        self.measured = {}
        if kind is None and Path(measured).is_file():
            fig = json.loads(Path(measured).read_text()).get("figures", {})
            self.measured = fig.get("throughput", {}) or {}
            self.name = f"measured {fig.get('environment', {}).get('gpu_name', '?')} ({Path(measured).name})"
        self.kind = kind or "a100"
        self.spec = table["kinds"][self.kind]
        self.ref, self.source = table["reference"], table["source"]
        if not self.measured:
            self.name = f"{self.spec['name']}, published {self.spec['precision']} ResNet-50 figures ({self.source})"
        self.memory_gb = float(self.spec["memory_gb"])

    def describe(self) -> str:
        return f"GPU: {self.name}"

    def seconds_per_image(self, arch: str, resolution: int, mode: str) -> float:
        rec = self.measured.get(arch)
        if rec:
            return self.macs(arch, resolution) / rec["macs_per_image"] / rec[f"{mode}_images_per_s"]
        ref = self.macs(self.ref["arch"], self.ref["resolution"])
        return self.macs(arch, resolution) / ref / self.spec[f"{mode}_images_per_s"]


# ----------------------------------------------------------------------------- work per job
def _settings(job) -> JobSettings:
    """The job's typed settings (passprune.settings holds every default, so none is restated here)."""
    return JobSettings.from_dict(job.settings, job.stage)


def _splits(job, settings: JobSettings) -> tuple[dict[str, int], int]:
    d = settings.data
    sizes = split_sizes(job.dataset, d.val_size, d.train_subset, d.test_subset)
    return sizes, int(d.image_size or size_of(job.dataset).image_size)


def _training(train: TrainSettings, n: dict[str, int]) -> tuple[float, float]:
    """(train, eval) images of one run of passprune.engine.train: full batches each epoch, val after each epoch."""
    epochs, bs = int(train.epochs), int(train.batch_size)
    if epochs == 0:
        return 0.0, float(n["val"])
    return float(epochs * steps_per_epoch(n["train"], bs, train.max_steps_per_epoch) * bs), float(epochs * n["val"])


def _method_options(base: str, given: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The method's family and its options with defaults; a method this installation does not register (a config
    written for a newer passprune) is costed from the options the config gives, and named in the output."""
    from .methods import get_method

    try:
        spec = get_method(base)
    except KeyError:
        return "unknown", dict(given or {})
    return spec.family, {**spec.defaults, **(given or {})}


def shared_searches(plan) -> dict[str, str]:
    """Search job key -> the key of the shared sparsity training (rule ``sparsify``) it starts from."""
    sparsify = {j.key for j in plan.jobs if j.stage == "sparsify"}
    return {j.key: d for j in plan.jobs if j.stage == "search" for d in j.deps if d in sparsify}


def _search_work(job, settings: JobSettings, n: dict[str, int], res: int, shared: bool) -> Work:
    """A search's images by its method's family; a search from a shared sparsity training (``shared``) only prunes."""
    family, o = _method_options(job.method, settings.method_options)
    bs = int(settings.search.batch_size)
    if family in STEP_FAMILIES:
        recal = int(o.get("bn_recalibration_batches", 0)) * bs
        ev = float(recal + n["val"])
        if o.get("select_on_val"):  # a candidate every log_every steps after the budget anneal
            ev *= 1 + o["steps"] * (1 - o.get("anneal_frac", 0)) / max(1, o.get("log_every", 1))
        return Work(float(o["steps"] * bs), ev, 1.0, res)
    if "epochs" in o and not shared:  # sparsity learning in the search itself (GReg; any search run alone)
        return _sparsity_work(o, bs, n, res)
    if "batches" in o:  # Taylor: gradients over minibatches
        return Work(float(o["batches"] * bs), 0.0, 1.0, res)
    return Work(0.0, 0.0, 1.0, res)  # weight criteria, and pruning from shared sparsity-trained weights: seconds


def _sparsity_work(o: dict[str, Any], bs: int, n: dict[str, int], res: int) -> Work:
    """``epochs`` of sparsity learning on the dense net, validation after each (passprune.engine.train)."""
    sparsity = TrainSettings(epochs=o["epochs"], batch_size=bs, max_steps_per_epoch=o.get("max_steps_per_epoch"))
    train, ev = _training(sparsity, n)
    return Work(train, ev, 1.0, res)


def job_work(
    job, bases: dict[tuple, str], dense_train: dict[tuple, TrainSettings], shared: frozenset[str] = frozenset()
) -> Work:
    """The images one planned job processes. ``bases`` maps (dataset, arch, seed, run, target) to the registered
    method of that run (from the plan's search jobs); ``dense_train`` (dataset, arch) to the pretraining recipe;
    ``shared`` holds the keys of the searches that start from a shared sparsity training (:func:`shared_searches`)."""
    settings = _settings(job)
    n, res = _splits(job, settings)
    if job.stage == "pretrain":
        train, ev = _training(settings.train, n)
        return Work(train, ev + n["test"], 1.0, res)
    if job.stage == "sparsify":
        _, o = _method_options(job.method, settings.method_options)
        return _sparsity_work(o, int(settings.search.batch_size), n, res)
    if job.stage == "search":
        return _search_work(job, settings, n, res, job.key in shared)
    if job.stage == "finetune":
        t = settings.finetune
        f = float(job.target or 1.0)
        train, ev = _training(t, n)
        if bases.get((job.dataset, job.arch, job.seed, job.run, job.target)) == "scratch":
            more, more_ev = _training(dense_train.get((job.dataset, job.arch), TrainSettings()), n)
            train, ev = train + more, ev + more_ev
        recal = t.bn_recalibration_batches * t.batch_size
        lat = settings.latency
        # the latency runs time the dense net and the pruned one: (1 + f) dense-equivalents per image, over f
        latency = lat.repeats * sum(lat.batch_sizes) * (1 + f) / f if lat.enabled else 0.0
        # before fine-tuning: val (raw), BN re-estimation, val + test; after: test; latency: dense + pruned nets
        return Work(train, ev + recal + 2 * n["val"] + 2 * n["test"] + latency, f, res)
    return Work(0.0, 0.0, 1.0, res)


# ----------------------------------------------------------------------------- peak memory per job
def memory_key(job, shared: bool = False) -> tuple[str, int, int, str, bool] | None:
    """(arch, resolution, batch, regime, bf16) that :func:`passprune.memory.job_memory` counts for a job, or None
    for a job that runs no model. Training (pretrain, fine-tune, sparsity learning) and PASS / Taylor run bf16
    autocast on CUDA; weight criteria, and a search from a shared sparsity training (``shared``), only evaluate, in
    fp32."""
    if job.stage not in ("pretrain", "sparsify", "search", "finetune"):
        return None
    settings = _settings(job)
    _, res = _splits(job, settings)
    if job.stage in ("pretrain", "finetune"):
        train = settings.train if job.stage == "pretrain" else settings.finetune
        return job.arch, res, int(train.batch_size), "train", True
    family, o = _method_options(job.method, settings.method_options)
    bs = int(settings.search.batch_size)
    if family in STEP_FAMILIES:
        return job.arch, res, bs, "pass", True
    if job.method in ("taylor", "taylor_tp"):
        return job.arch, res, bs, job.method, True
    if "epochs" in o and not shared:  # sparsity learning trains the dense net (rule sparsify, or GReg's search)
        return job.arch, res, bs, "train", True
    return job.arch, res, bs, "eval", False


def rule_memory(plan) -> dict[str, float]:
    """Peak GiB per rule: the largest of its jobs, one count per distinct (arch, resolution, batch, regime)."""
    from .memory import job_memory

    shared = shared_searches(plan)
    peaks: dict[tuple, float] = {}
    out: dict[str, float] = {}
    for j in plan.jobs:
        key = memory_key(j, j.key in shared)
        if key is None:
            continue
        if key not in peaks:
            peaks[key] = job_memory(*key).peak_gib
        out[j.rule] = max(out.get(j.rule, 0.0), peaks[key])
    return out


# ----------------------------------------------------------------------------- the estimate
def _job_seconds(w: Work, arch: str, tp: Throughput, overhead_s: float) -> float:
    if not (w.train or w.eval):
        return overhead_s
    return overhead_s + w.macs_factor * (
        w.train * tp.seconds_per_image(arch, w.resolution, "train")
        + w.eval * tp.seconds_per_image(arch, w.resolution, "eval")
    )


def _rules(plan, costs: list[JobCost], gpu: bool) -> dict[str, dict[str, float]]:
    rules: dict[str, dict[str, float]] = {}
    for rule, count in plan.counts.items():
        mine = [c for c in costs if c.rule == rule]
        rules[rule] = {
            "jobs": count,
            "hours": sum(c.seconds for c in mine) / 3600,
            "max_job_hours": max((c.seconds for c in mine), default=0) / 3600,
            "macs": sum(c.macs for c in mine),
        }
        if gpu:
            rules[rule]["gpu_hours"] = sum(c.gpu_seconds or 0.0 for c in mine) / 3600
            rules[rule]["gpu_max_job_hours"] = max((c.gpu_seconds or 0.0 for c in mine), default=0.0) / 3600
    return rules


def estimate(
    plan,
    throughput: Throughput,
    overhead_s: float = DEFAULT_OVERHEAD_S,
    gpu: GpuThroughput | None = None,
    gpu_memory_gb: float | None = None,
) -> dict[str, Any]:
    """Per-job seconds and per-rule totals of a :class:`passprune.plan.Plan`: on ``throughput``'s device (the CPU
    column), and, given a ``gpu`` model, GPU-hours too; given ``gpu_memory_gb``, each rule's peak GPU memory
    (counted on the CPU: seconds per distinct job shape) against that card."""
    bases = {(j.dataset, j.arch, j.seed, j.run, j.target): j.method for j in plan.jobs if j.stage == "search"}
    dense = {(j.dataset, j.arch): _settings(j).train for j in plan.jobs if j.stage == "pretrain"}
    shared = shared_searches(plan)
    from .methods import list_methods

    costs: list[JobCost] = []
    for j in plan.jobs:
        w = job_work(j, bases, dense, frozenset(shared)) if j.stage else Work(0, 0, 1, 0)
        seconds, macs = _job_seconds(w, j.arch, throughput, overhead_s), 0.0
        if w.train or w.eval:
            macs = w.macs_factor * throughput.macs(j.arch, w.resolution) * (3 * w.train + w.eval)  # bwd ~ 2x fwd
        gpu_s = _job_seconds(w, j.arch, gpu, overhead_s) if gpu is not None else None
        costs.append(
            JobCost(j.rule, j.dataset, j.arch, j.run, j.target, w.resolution, w.train, w.eval, seconds, macs, gpu_s)
        )
    rules = _rules(plan, costs, gpu is not None)
    by_pair: dict[str, float] = {}
    for c in costs:
        by_pair[f"{c.dataset}/{c.arch}"] = by_pair.get(f"{c.dataset}/{c.arch}", 0.0) + c.seconds / 3600
    est: dict[str, Any] = {
        "configfile": plan.configfile,
        "device": throughput.device,
        "throughput": throughput.describe(),
        "overhead_s_per_job": overhead_s,
        "rules": rules,
        "total_jobs": sum(plan.counts.values()),
        "total_hours": sum(r["hours"] for r in rules.values()),
        "total_macs": sum(r["macs"] for r in rules.values()),
        "by_dataset_arch_hours": by_pair,
        "unregistered_methods": sorted({j.method for j in plan.jobs if j.method} - set(list_methods())),
        "jobs": [asdict(c) for c in costs],
    }
    est["shared_sparsity"] = sparsity_saving(plan, costs, shared, overhead_s)
    if gpu is not None:
        est["gpu"] = {"kind": gpu.kind, "describe": gpu.describe(), "source": gpu.source, "precision": "bf16 autocast"}
        est["total_gpu_hours"] = sum(r.get("gpu_hours", 0.0) for r in rules.values())
    if gpu_memory_gb is not None:
        for rule, gib in rule_memory(plan).items():
            rules[rule]["peak_gib"] = gib
        est["gpu_memory_gb"] = gpu_memory_gb
    return est


def sparsity_saving(plan, costs: list[JobCost], shared: dict[str, str], overhead_s: float) -> dict[str, Any]:
    """What training each sparsity method once per (dataset, arch, seed, options) saves against training it in every
    target's search (the single-job path): each shared search would have done its ``sparsify`` job's work (without
    a second start-up), and the ``sparsify`` jobs would not run. MACs, CPU and GPU hours saved, and the MACs share of
    the per-target grid."""
    by_key = {j.key: c for j, c in zip(plan.jobs, costs)}
    sparsify = [c for j, c in zip(plan.jobs, costs) if j.stage == "sparsify"]
    again = [by_key[d] for d in shared.values()]  # one training per search that reads one
    gpu = all(c.gpu_seconds is not None for c in costs)

    def saved(field: str, start: float) -> float:
        return sum(getattr(c, field) - start for c in again) - sum(getattr(c, field) for c in sparsify)

    macs = saved("macs", 0.0)
    out = {
        "sparsify_jobs": len(sparsify),
        "searches": len(again),
        "trainings_saved": len(again) - len(sparsify),
        "macs_saved": macs,
        "hours_saved": saved("seconds", overhead_s) / 3600,
        "per_target_macs_share": macs / (sum(c.macs for c in costs) + macs) if macs > 0 else 0.0,
    }
    if gpu:
        out["gpu_hours_saved"] = saved("gpu_seconds", overhead_s) / 3600
    return out


def _saving_lines(est: dict[str, Any]) -> list[str]:
    """The shared sparsity training's saving against per-target training, in the estimate's units."""
    s = est.get("shared_sparsity") or {}
    if not s.get("sparsify_jobs"):
        return []
    unit = "GPU-hours" if est["device"] == "cuda" else "core-hours"
    gpu = f", {s['gpu_hours_saved']:,.1f} GPU-hours" if "gpu_hours_saved" in s else ""
    return [
        "",
        f"shared sparsity training: {s['sparsify_jobs']:,} sparsify jobs train once for the {s['searches']:,} "
        f"searches that start from them ({s['trainings_saved']:,} fewer trainings than one per target's search; "
        f"{s['sparsify_jobs']:,} more jobs in the DAG): saves {s['macs_saved'] / 1e15:,.1f} PetaMACs "
        f"({100 * s['per_target_macs_share']:.1f}% of the grid's MACs with per-target training){gpu}, "
        f"{s['hours_saved']:,.1f} {unit}",
    ]


def _fits(est: dict[str, Any], r: dict[str, float]) -> str:
    if "peak_gib" not in r:
        return ""
    card = est["gpu_memory_gb"]
    verdict = "fits" if r["peak_gib"] <= card else f"does not fit {card:g} GB"
    return f" {r['peak_gib']:9.1f} {verdict}"


def _table(est: dict[str, Any]) -> list[str]:
    """One row per rule: GPU-hours first where a GPU model was given, the CPU-derived hours as a second column,
    then the peak GPU memory where counted."""
    unit = "GPU-hours" if est["device"] == "cuda" else "core-hours"
    mem = f" {'peak GiB':>9} on a {est['gpu_memory_gb']:g} GB card" if "gpu_memory_gb" in est else ""
    if "gpu" not in est:
        head = [f"{'rule':26} {'jobs':>7} {unit:>12} {'longest job (h)':>16} {'PetaMACs':>10}{mem}"]
        rows = [
            f"{rule:26} {r['jobs']:7d} {r['hours']:12.1f} {r['max_job_hours']:16.2f} {r['macs'] / 1e15:10.1f}"
            + _fits(est, r)
            for rule, r in est["rules"].items()
        ]
        total = (
            f"{'total':26} {est['total_jobs']:7d} {est['total_hours']:12.1f} {'':16} {est['total_macs'] / 1e15:10.1f}"
        )
        return head + rows + [total]
    head = [f"{'rule':26} {'jobs':>7} {'GPU-hours':>12} {'longest (h)':>12} {unit:>12} {'PetaMACs':>10}{mem}"]
    rows = [
        f"{rule:26} {r['jobs']:7d} {r['gpu_hours']:12.1f} {r['gpu_max_job_hours']:12.2f} {r['hours']:12.1f} "
        f"{r['macs'] / 1e15:10.1f}" + _fits(est, r)
        for rule, r in est["rules"].items()
    ]
    total = (
        f"{'total':26} {est['total_jobs']:7d} {est['total_gpu_hours']:12.1f} {'':12} {est['total_hours']:12.1f} "
        f"{est['total_macs'] / 1e15:10.1f}"
    )
    return head + rows + [total]


def _assumptions(est: dict[str, Any]) -> list[str]:
    """What the GPU column and the memory column assume, stated under the table."""
    lines = ["", "assumptions:"]
    if "gpu" in est:
        g = est["gpu"]
        lines += [
            f"  GPU-hours: {g['describe']}",
            f"  GPU kind: {g['kind']}; source: {g['source']}",
            f"  precision: {g['precision']} (training, PASS search, Taylor); "
            f"start-up: {est['overhead_s_per_job']:.0f} s per job",
        ]
    if "gpu_memory_gb" in est:
        lines.append(
            f"  peak GiB: largest job of the rule, saved activations counted on the CPU (passprune.memory) + "
            f"parameters, gradients, optimiser state, 20% allowance and the CUDA context; card: "
            f"{est['gpu_memory_gb']:g} GB"
        )
    return lines if len(lines) > 2 else []


def render(est: dict[str, Any]) -> str:
    unit = "GPU-hours" if est["device"] == "cuda" else "core-hours"
    lines = [
        f"passprune estimate: {est['configfile']}",
        f"throughput ({'GPU' if est['device'] == 'cuda' else 'core-hours column'}): {est['throughput']}",
        f"(+ {est['overhead_s_per_job']:.0f} s start-up per job, an assumption)",
        "",
        *_table(est),
        "PetaMACs: the work itself, device-independent (forward MACs x 3 per training image, x 1 per "
        "evaluated one); hours = that work at the measured images/s",
        *_saving_lines(est),
        *_assumptions(est),
    ]
    lines += ["", f"by dataset/arch ({unit}):"]
    lines += [
        f"  {k:28} {v:10.1f}" for k, v in sorted(est["by_dataset_arch_hours"].items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    if est["unregistered_methods"]:
        lines += [
            "",
            f"not registered in this passprune (costed from the config's options only; a job would fail): "
            f"{est['unregistered_methods']}",
        ]
    if est["device"] != "cuda":
        lines += [
            "",
            "The core-hours are CPU-derived: one CPU core's images/s, measured at small resolutions and scaled "
            "by MACs; they are not GPU-hours (the GPU-hours column, where printed, comes from the GPU model in "
            "the assumptions). On a GPU node run `python bench/throughput.py --device cuda`, then estimate again "
            "(it prefers the cuda entry).",
        ]
    return "\n".join(lines)


def cmd_estimate(a: argparse.Namespace) -> None:
    from .files import atomic_write_json
    from .plan import StudyError, plan

    throughput = Throughput(a.throughput, a.device)
    try:
        planned = plan(a.configfile, workdir=a.workdir)
    except StudyError as err:
        raise SystemExit(f"passprune estimate: {err}") from None
    gpu = GpuThroughput(a.gpu)
    est = estimate(planned, throughput, a.overhead_s, gpu=gpu, gpu_memory_gb=None if a.no_memory else a.gpu_memory_gb)
    print(render(est))
    if a.json:
        atomic_write_json(a.json, est)


def add_commands(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("estimate", help="jobs per rule and device-hours of a config, from measured throughput")
    q.add_argument("--configfile", default=None, help="the study config (default: config/config.yaml)")
    q.add_argument("--throughput", default=str(THROUGHPUT), help="bench/throughput.json (python bench/throughput.py)")
    q.add_argument("--device", default=None, choices=["cpu", "cuda"], help="whose figures (default: cuda if measured)")
    q.add_argument("--overhead-s", type=float, default=DEFAULT_OVERHEAD_S, help="start-up seconds per job")
    q.add_argument(
        "--gpu",
        default=None,
        choices=["a100", "v100"],
        help="GPU kind of the GPU-hours column (default: bench/figures/gpu.json if measured, else a100)",
    )
    q.add_argument("--gpu-memory-gb", type=float, default=40.0, help="card size the peak memory is checked against")
    q.add_argument("--no-memory", action="store_true", help="skip counting peak GPU memory (seconds per job shape)")
    q.add_argument("--workdir", default=None, help="count only the jobs still missing there (default: the full grid)")
    q.add_argument("--json", default=None, help="also write the estimate (with every job's figures) to this file")
    q.set_defaults(fn=cmd_estimate)
