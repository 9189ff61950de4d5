"""Training and evaluation throughput (images/s) of every registry architecture: the input of `passprune estimate`.

Why: a compute budget for a config (jobs x images x seconds per image) is only as good as its seconds per image,
so they are measured here, on the machine at hand, for the project's own models and training step (SGD,
cross-entropy, forward + backward; evaluation = forward in eval mode, no gradients), not taken from a paper.

On a CPU the rates are also given per second of CPU time the process got (``*_images_per_cpu_s``; one
thread by default), which a machine shared with other jobs does not distort the way it distorts wall time;
``passprune estimate`` uses those (core-hours). On a CPU the step is measured at small resolutions (a 224-px ResNet-50 step takes many seconds per image on two
cores); `passprune estimate` scales a figure to the config's resolution by the ratio of conv+linear MACs per
image (``passprune.structure.conv_linear_macs``). Two resolutions per ImageNet-stem network let a reader see
how well that scaling holds (``scaling_check`` in the output). On a GPU, measure at the real resolution:

    python bench/throughput.py                       # CPU (what this repository ships)
    python bench/throughput.py --device cuda         # adds a "cuda" entry; estimate then prefers it

Results go to ``bench/throughput.json`` under the device key, written atomically; other devices' entries are
kept, so a GPU measurement never erases the CPU one.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

OUT = Path(__file__).resolve().parent / "throughput.json"

#: Networks with a CIFAR stem (3x3, no max-pool) run at 32 px; the others have the 7x7/2 + max-pool stem.
CIFAR_STEM = {"resnet20", "resnet56", "resnet18_cifar", "vgg16_bn"}
#: Small resolutions measured on a CPU (the largest is the one `passprune estimate` scales from).
CPU_RESOLUTIONS = {"cifar": [32], "imagenet": [64, 112]}
#: On a GPU the real resolutions can be measured directly.
CUDA_RESOLUTIONS = {"cifar": [32, 224], "imagenet": [64, 224]}


def _machine(device: torch.device) -> dict[str, Any]:
    """What a reader needs to compare figures across machines."""
    cpu = platform.processor() or "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device):
    """The engine's precision: bf16 autocast on a GPU, fp32 on a CPU (passprune.engine._autocast)."""
    return (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )


def measure(
    arch: str, resolution: int, batch_size: int, steps: int, warmup: int, device: torch.device, num_classes: int = 100
) -> dict[str, Any]:
    """Images/s of one training step (fwd + bwd + SGD update) and of evaluation, for one arch and resolution."""
    from passprune.models import build_model
    from passprune.structure import conv_linear_macs

    torch.manual_seed(0)
    model = build_model(arch, num_classes=num_classes)
    macs = conv_linear_macs(model, torch.zeros(1, 3, resolution, resolution))
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, resolution, resolution, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch_size,), device=device)

    def train_step() -> None:
        with _autocast(device):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def eval_step() -> None:
        with torch.no_grad(), _autocast(device):
            model(x)

    out: dict[str, Any] = {"resolution": resolution, "batch_size": batch_size, "steps": steps, "macs_per_image": macs}
    for name, fn, mode in (("train", train_step, True), ("eval", eval_step, False)):
        model.train(mode)
        for _ in range(warmup):
            fn()
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            fn()
        _sync(device)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        out[f"{name}_images_per_s"] = steps * batch_size / seconds
        out[f"{name}_macs_per_s"] = steps * batch_size * macs / seconds  # forward MACs/s (fwd+bwd ~ 3x that)
        if device.type == "cpu":  # per second of CPU time this process got: fair on a machine shared with other jobs
            out[f"{name}_images_per_cpu_s"] = steps * batch_size / cpu_seconds
    return out


def run(
    device_name: str,
    archs: list[str],
    batch_size: int | None,
    steps: int,
    warmup: int,
    threads: int,
    resolutions: list[int] | None,
) -> dict[str, Any]:
    """Measure every arch; returns the device entry of throughput.json."""
    device = torch.device(device_name)
    torch.set_num_threads(threads)
    bs = batch_size or (128 if device.type == "cuda" else 16)
    table = CUDA_RESOLUTIONS if device.type == "cuda" else CPU_RESOLUTIONS
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict[str, Any]]] = {}
    for arch in archs:
        res_list = resolutions or table["cifar" if arch in CIFAR_STEM else "imagenet"]
        results[arch] = []
        for r in res_list:
            rec = measure(arch, r, bs, steps, warmup, device)
            results[arch].append(rec)
            print(
                f"{arch:>15} @ {r:>3}px: train {rec['train_images_per_s']:9.1f} img/s, "
                f"eval {rec['eval_images_per_s']:9.1f} img/s, {rec['macs_per_image'] / 1e6:8.1f} MMACs/img",
                flush=True,
            )
    checks = {}
    for arch, recs in results.items():  # how far the MACs-ratio scaling is from a second measurement
        if len(recs) >= 2:
            lo, hi = recs[0], recs[-1]
            key = "train_images_per_cpu_s" if "train_images_per_cpu_s" in lo else "train_images_per_s"
            predicted = lo[key] * lo["macs_per_image"] / hi["macs_per_image"]
            checks[arch] = {
                "from_px": lo["resolution"],
                "to_px": hi["resolution"],
                "measured_over_predicted_train": hi[key] / predicted,
            }
    return {
        "machine": _machine(device),
        "threads": threads if device.type == "cpu" else None,
        "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
        "archs": results,
        "scaling_check": checks,
    }


def main(argv: list[str] | None = None) -> None:
    from passprune.files import atomic_write_json
    from passprune.models import list_models

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (the key in the output is cpu or cuda)")
    p.add_argument("--archs", nargs="*", default=None, help="default: every registry architecture")
    p.add_argument("--resolutions", nargs="*", type=int, default=None, help="default: per stem and device")
    p.add_argument("--batch-size", type=int, default=None, help="default: 16 on a CPU, 128 on a GPU")
    p.add_argument("--steps", type=int, default=4, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier on a shared machine)")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False)")
    entry = run(a.device, a.archs or list_models(), a.batch_size, a.steps, a.warmup, a.threads, a.resolutions)
    data = json.loads(a.out.read_text()) if a.out.is_file() else {}
    data.setdefault("devices", {})["cuda" if a.device.startswith("cuda") else "cpu"] = entry
    data["about"] = (
        "images/s of one SGD training step (forward + backward + update) and of evaluation (forward, "
        "no gradients) per architecture, measured by bench/throughput.py; passprune estimate scales "
        "them to a config's resolution by the ratio of conv+linear MACs per image"
    )
    atomic_write_json(a.out, data)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
