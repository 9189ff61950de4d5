"""GPU acceptance figures (``scripts/gpu-acceptance.sh``): environment, peak memory of PASS and Taylor, training
throughput per paper architecture, and masked-vs-pruned logits and latency, on the machine at hand.

Why one script: the pipeline's GPU path was written on CPU-only machines. The first GPU machine must answer at
once what the cluster run depends on -- does this torch see the GPU and carry kernels for it, do PASS's search
step and Taylor's importance pass fit the card at the paper's sizes (ResNet-50, 224 px, batch 256) in fp32 and
with bf16 autocast, how many images/s each paper architecture trains at (the input of ``passprune estimate``'s
GPU-hours), and does a physically pruned network still give the masked network's logits on the GPU, and how much
faster is it.

    python bench/gpu.py --dag DAG.json                       # on a GPU: writes bench/figures/gpu.json
    python bench/gpu.py --cpu --dag DAG.json --out DIR/gpu.json   # dry mode: tiny sizes on the CPU (CI)

The output has the shape of the other parts (``bench/common.py`` ``Part``); its ``figures`` hold one section per
question: ``environment``, ``dag`` (the miniature paper DAG, read from ``--dag``, which the shell script writes),
``memory`` (one row per method x precision: ``peak_allocated_gib`` from ``torch.cuda.max_memory_allocated``, None
on a CPU, and ``saved_tensor_gib``, the bytes autograd saved for backward, counted on any device; the fp32 rows run
under ``passprune.memory.full_precision``, so the methods' own bf16 autocast is off too, and each row records
``methods_bf16_on_cuda``, whether the methods would autocast on a GPU inside it),
``throughput`` (``{arch: {resolution, batch_size, precision, train_images_per_s, eval_images_per_s,
macs_per_image}}``; what ``passprune estimate`` may read for a GPU kind, named by ``environment.gpu_name``) and
``masked_vs_pruned`` (per arch: largest logit difference in fp32 with TF32 off, and interleaved latencies).
``met`` is True when the DAG passed, every masked/pruned pair agrees, and both bf16 peaks fit a 40 GB card; on a
CPU it is None (nothing about a GPU was measured).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml
from common import REPO, RESULTS_DIR, Part, load_average, machine, md_table

PAPER = REPO / "config" / "paper.yaml"
#: The paper's architectures (config/paper.yaml's archs) and the memory question's network.
ARCHS: tuple[str, ...] = tuple(yaml.safe_load(PAPER.read_text())["archs"])
MEMORY_ARCH = "resnet50"
CARD_GIB = 40.0  # the smallest common data-centre card (A100 40 GB) the memory figures are judged against
GIB = 1024**3


# ----------------------------------------------------------------------------- sizes
def sizes(cpu: bool) -> dict[str, Any]:
    """The paper's sizes on a GPU; the dry mode's tiny ones on a CPU (the same code runs, so it cannot rot)."""
    if cpu:
        return {"image": 32, "batch": 2, "steps": 2, "warmup": 1, "latency_batches": (1, 2), "repeats": 2}
    return {"image": 224, "batch": 256, "steps": 10, "warmup": 3, "latency_batches": (1, 32), "repeats": 50}


# ----------------------------------------------------------------------------- environment
def _nvidia_smi() -> dict[str, Any]:
    """Driver version, GPU name and memory as ``nvidia-smi`` reports them (None where it is missing)."""
    query = "driver_version,name,memory.total"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"driver": None, "nvidia_smi": f"not available ({err.__class__.__name__})"}
    if out.returncode != 0:
        return {"driver": None, "nvidia_smi": (out.stderr or out.stdout).strip()[:300]}
    first = out.stdout.strip().splitlines()[0].split(", ")
    return {"driver": first[0], "nvidia_smi": out.stdout.strip()}


def environment(device: torch.device) -> dict[str, Any]:
    """What decides whether this torch runs here: versions, driver, the wheel's arch list and the GPU's."""
    from passprune.devices import cuda_problem, runtime_info

    env: dict[str, Any] = {**runtime_info(device), **_nvidia_smi()}
    env["arch_list"] = torch.cuda.get_arch_list() if torch.version.cuda else []
    env["cuda_problem"] = None
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        env["capability"] = f"sm_{major}{minor}"
        env["total_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / GIB
    elif torch.version.cuda:
        problem = cuda_problem()
        env["cuda_problem"] = problem[1] if problem else None
    return env


# ----------------------------------------------------------------------------- memory
def synthetic_data(size: int, batch: int, classes: int = 100, seed: int = 0):
    """A DataBundle of random uint8 images at ``size`` px: two training batches, one validation batch."""
    from passprune.data.sources import tensor_source
    from passprune.data.splits import DataBundle
    from passprune.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    g = torch.Generator().manual_seed(seed)
    n_train, n_val = 2 * batch, batch
    pool = torch.randint(0, 256, (n_train + n_val, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, classes, (n_train + n_val,), generator=g)
    src = tensor_source(
        "synthetic", pool, labels, pool[:batch], labels[:batch], mean=IMAGENET_MEAN, std=IMAGENET_STD,
        class_names=[str(c) for c in range(classes)], pad=0, image_size=size,
    )  # fmt: skip
    tr, va = torch.arange(n_train), torch.arange(n_train, n_train + n_val)
    return DataBundle(
        name=src.name, num_classes=classes, in_channels=3, image_size=size, mean=src.mean, std=src.std,
        class_names=src.class_names, train=src.make_split("train", tr, labels[tr]),
        val=src.make_split("train", va, labels[va]), test=src.make_split("test", torch.arange(batch), labels[:batch]),
    )  # fmt: skip


def method_options(method: str, size: int) -> dict[str, Any]:
    """One step of the method at config/paper.yaml's options: PASS one search step (its hypernetwork and prompt
    as the paper sets them, the prompt scaled with the image), Taylor one gradient batch."""
    if method == "taylor":
        return {"batches": 1}
    paper = yaml.safe_load(PAPER.read_text())["methods"]["pass"]
    opts = {**paper, "steps": 1, "bn_recalibration_batches": 1, "checkpoint_every": 0, "log_every": 1}
    opts["prompt_width"] = max(1, round(paper["prompt_width"] * size / 224))
    return opts


@contextlib.contextmanager
def count_saved_tensors(out: dict[str, int]):
    """Sum the bytes autograd saves for backward (each storage once): the activation memory a step holds."""
    seen: set[tuple[int, int]] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            out["bytes"] = out.get("bytes", 0) + key[1]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def peak_memory(method: str, precision: str, device: torch.device, s: dict[str, Any]) -> dict[str, Any]:
    """Run one step of a registered method (the real ``spec.fn``) on ResNet-50 and report its memory. fp32 means fp32
    throughout: PASS's search and Taylor open their own bf16 autocast on CUDA (``passprune.memory.gpu_autocast``),
    which an outer disabled autocast cannot switch off, so the fp32 row runs under ``full_precision``."""
    from passprune.memory import bf16_on, full_precision
    from passprune.methods import SearchContext, get_method
    from passprune.models import build_model
    from passprune.structure import PruningSpace

    torch.manual_seed(0)
    data = synthetic_data(s["image"], s["batch"])
    model = build_model(MEMORY_ARCH, num_classes=data.num_classes).to(device)
    space = PruningSpace(model, torch.zeros(1, 3, s["image"], s["image"], device=device), max_prune_frac=0.9)
    spec = get_method(method)
    counted: dict[str, int] = {}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    fp32 = full_precision() if precision == "fp32" else contextlib.nullcontext()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as work, fp32, autocast, count_saved_tensors(counted):
        methods_bf16 = bf16_on("cuda")  # what the methods' own autocast would do on a GPU, here
        ctx = SearchContext(
            model=model, space=space, data=data, target=0.5, options=spec.options(method_options(method, s["image"])),
            device=device, seed=0, workdir=Path(work), batch_size=s["batch"],
        )  # fmt: skip
        spec.fn(ctx)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None
    return {
        "method": method, "precision": precision, "arch": MEMORY_ARCH, "image_size": s["image"],
        "batch_size": s["batch"], "peak_allocated_gib": peak, "saved_tensor_gib": counted.get("bytes", 0) / GIB,
        "methods_bf16_on_cuda": methods_bf16, "seconds": time.perf_counter() - t0,
    }  # fmt: skip


# ----------------------------------------------------------------------------- throughput
def throughput(device: torch.device, s: dict[str, Any]) -> dict[str, Any]:
    """Training and evaluation images/s per paper architecture, with the engine's precision (bench/throughput.py)."""
    from throughput import measure

    out = {}
    for arch in ARCHS:
        rec = measure(arch, s["image"], s["batch"], s["steps"], s["warmup"], device)
        rec["precision"] = "bf16 autocast" if device.type == "cuda" else "fp32"
        out[arch] = rec
        print(f"throughput {arch}: train {rec['train_images_per_s']:.1f} img/s", flush=True)
    return out


# ----------------------------------------------------------------------------- masked vs pruned
def _randomise_bn(model: nn.Module, seed: int = 1) -> None:
    """Random BatchNorm statistics, so a masking bug cannot hide behind identity-like normalisation."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def masked_vs_pruned(arch: str, device: torch.device, s: dict[str, Any]) -> dict[str, Any]:
    """Logits of the dense network with channels masked out vs its physically pruned twin (fp32, TF32 off), and
    their interleaved latencies at the paper's latency batch sizes, at half the dense MACs (random ranking)."""
    from passprune.metrics import interleaved_latency
    from passprune.models import build_model
    from passprune.structure import ChannelMasker, PruningSpace, prune_model

    torch.manual_seed(0)
    dense = build_model(arch, num_classes=100).eval()
    _randomise_bn(dense)
    x0 = torch.zeros(1, 3, s["image"], s["image"])
    space = PruningSpace(dense, x0)
    g = torch.Generator().manual_seed(2)
    structure = space.select_global({grp.id: torch.rand(grp.size, generator=g) for grp in space.groups}, 0.5)
    pruned = prune_model(copy.deepcopy(dense), x0, structure).eval().to(device)
    dense = dense.to(device)
    x = torch.randn(s["batch"], 3, s["image"], s["image"], generator=g).to(device)
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad(), ChannelMasker(space, dense) as masker:
            masker.set(space.masks_from_structure(structure, device))
            masked = dense(x)
        with torch.no_grad():
            physical = pruned(x)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    diff, scale = (masked - physical).abs().max().item(), masked.abs().max().item()
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    lat = interleaved_latency(
        dense.to(memory_format=fmt), pruned.to(memory_format=fmt), (3, s["image"], s["image"]), device,
        batch_sizes=s["latency_batches"], repeats=s["repeats"], warmup=3,
    )  # fmt: skip
    return {
        "image_size": s["image"], "batch_size": s["batch"], "macs_ratio": space.structure_macs_ratio(structure),
        "max_abs_diff": diff, "max_abs_logit": scale, "equal": diff <= 1e-4 * max(1.0, scale), "latency": lat,
    }  # fmt: skip


# ----------------------------------------------------------------------------- the part
def verdict(fig: dict[str, Any], cpu: bool) -> bool | None:
    """True when the DAG passed (on the GPU: every record says it ran on one), every masked/pruned pair agrees and
    both bf16 peaks fit a CARD_GIB card."""
    ok = fig["dag"].get("rc") == 0 and all(r["equal"] for r in fig["masked_vs_pruned"].values())
    if cpu:
        return None if ok else False
    ran_on = fig["dag"].get("ran_on") or ["none"]
    ok = ok and all(d.startswith("cuda") for d in ran_on)
    bf16 = [r["peak_allocated_gib"] for r in fig["memory"] if r["precision"] == "bf16"]
    return ok and bool(bf16) and max(bf16) < CARD_GIB


def table(fig: dict[str, Any]) -> str:
    rows = [
        [f"{r['method']} step, {r['arch']} {r['image_size']} px, batch {r['batch_size']}, {r['precision']}",
         "n/a (CPU)" if r["peak_allocated_gib"] is None else f"{r['peak_allocated_gib']:.1f} GiB",
         f"{r['saved_tensor_gib']:.2f} GiB saved for backward"]
        for r in fig["memory"]
    ]  # fmt: skip
    rows += [
        [f"train {a} {r['resolution']} px, batch {r['batch_size']}", f"{r['train_images_per_s']:.0f} images/s",
         r["precision"]]
        for a, r in fig["throughput"].items()
    ]  # fmt: skip
    rows += [
        [f"masked vs pruned {a} at {r['macs_ratio']:.3f} of MACs", f"max |diff| {r['max_abs_diff']:.2e}",
         ", ".join(f"bs{b}: {r['latency'].get(f'speedup_latency_bs{b}', float('nan')):.2f}x" for b in (1, 2, 32)
                   if f"speedup_latency_bs{b}" in r["latency"])]
        for a, r in fig["masked_vs_pruned"].items()
    ]  # fmt: skip
    d = fig["dag"]
    rows.append(["miniature paper DAG", f"rc {d.get('rc')}, {d.get('jobs')} jobs", f"{d.get('seconds', 0):.0f} s"])
    return md_table(["what", "figure", "detail"], rows)


def measure_all(cpu: bool, dag: dict[str, Any]) -> Part:
    device = torch.device("cpu") if cpu else torch.device("cuda", 0)
    s = sizes(cpu)
    fig: dict[str, Any] = {"environment": environment(device), "dag": dag}
    print(json.dumps(fig["environment"], indent=1), flush=True)
    fig["memory"] = [peak_memory(m, p, device, s) for m in ("pass", "taylor") for p in ("fp32", "bf16")]
    fig["throughput"] = throughput(device, s)
    fig["masked_vs_pruned"] = {a: masked_vs_pruned(a, device, s) for a in ARCHS}
    notes = [
        f"Sizes: {s['image']} px, batch {s['batch']}" + (" (the --cpu dry mode: tiny sizes on the CPU)" if cpu else ""),
        "Memory: one step of the registered method (spec.fn) on a fresh ResNet-50 with random data; peak = "
        "torch.cuda.max_memory_allocated after reset (model, optimiser and activations); bf16 = torch.autocast; fp32 = "
        "passprune.memory.full_precision (the methods' own bf16 autocast off too).",
        f"Verdict: the DAG passed, masked and pruned logits agree, and bf16 peaks fit a {CARD_GIB:.0f} GB card.",
    ]
    return Part(
        "gpu", "GPU acceptance (scripts/gpu-acceptance.sh)",
        f"every check passes; PASS and Taylor at ResNet-50 / 224 px / batch 256 fit a {CARD_GIB:.0f} GB card in bf16",
        verdict(fig, cpu), table(fig), notes, fig, command="bash scripts/gpu-acceptance.sh" + (" --cpu" if cpu else ""),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu", action="store_true", help="dry mode: tiny sizes on the CPU")
    p.add_argument("--dag", type=Path, required=True, help="the DAG result the shell script wrote (JSON)")
    p.add_argument("--out", type=Path, default=None, help="default: bench/figures/gpu.json (GPU mode only)")
    a = p.parse_args(argv)
    if a.cpu and a.out is None:
        p.error("--cpu writes only where --out says (never bench/figures/gpu.json)")
    if not a.cpu and not torch.cuda.is_available():
        p.error("no CUDA device is visible; use --cpu for the dry mode")
    dag = json.loads(a.dag.read_text())
    load0, t0 = load_average(), time.perf_counter()
    part = measure_all(a.cpu, dag)
    part.seconds = round(time.perf_counter() - t0, 1)
    part.load_before, part.load_after, part.machine = load0, load_average(), machine()
    out = a.out or RESULTS_DIR / "gpu.json"  # common.run_part saves only there: the dry mode must not
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(part), indent=1, default=str) + "\n")
    tmp.replace(out)
    part.print()
    print(f"wrote {out}; verdict: {part.met}")
    if part.met is False:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
