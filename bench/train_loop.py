"""Part 1: training-loop throughput of ``passprune.engine.train`` against a bare PyTorch loop.

Why this comparison: every pipeline stage that trains (pretraining, sparsity training, fine-tuning) goes
through ``engine.train``, which adds per-step work a bare loop does not do (a finite-loss check that syncs
on ``loss.item()``, running accuracy, a learning-rate scheduler, tqdm, an epoch checkpoint). The goal is
that this bookkeeping costs at most 5% (engine >= 0.95x the bare loop's images/s).

Same model (the embedded default's half-width ResNet-20, same seed and init), same data (Fashion-MNIST
through passprune's own ``Split.batches`` with the same generator), same batch size, optimiser (SGD,
Nesterov, weight decay) and schedule. Both end with one pass over the same small validation split (the
engine always evaluates after an epoch; the bare loop does the same forward passes), so the ratio compares
like with like. Runs are interleaved (engine, bare, bare, engine, ...) so shared load hits both alike; the
ratio is the median of per-pair ratios.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from common import REPO, Part, Timer, md_table, median, run_part

from passprune.data import load_dataset
from passprune.engine import train
from passprune.models import build_model
from passprune.settings import TrainSettings

ARCH, WIDTH, BATCH = "resnet20", 0.5, 64


def bare_loop(model: torch.nn.Module, data, cfg: TrainSettings, steps: int, seed: int) -> None:
    """What a user would write: the same batches, optimiser and schedule, nothing else."""
    model.train()
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed * 1000)  # the engine's generator for epoch 0
    for i, (x, y) in enumerate(
        data.train.batches(cfg.batch_size, shuffle=True, augment=cfg.augment, generator=gen, drop_last=True)
    ):
        if i >= steps:
            break
        loss = F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        for x, _ in data.val.batches(cfg.eval_batch_size, shuffle=False, augment=False):
            model(x)


def measure(steps: int, repeats: int, threads: int) -> Part:
    torch.set_num_threads(threads)
    data = load_dataset("fashion_mnist", str(REPO / "data"), seed=0, val_size=256, train_subset=10000, test_subset=256)
    torch.manual_seed(0)
    init = build_model(ARCH, num_classes=data.num_classes, in_channels=data.in_channels, width=WIDTH)
    cfg = TrainSettings(
        epochs=1,
        batch_size=BATCH,
        lr=0.05,
        schedule="cosine",
        augment=False,
        label_smoothing=0.1,
        max_steps_per_epoch=steps,
    )
    images = steps * BATCH
    tmp = Path(tempfile.mkdtemp(prefix="passprune-bench-train-"))
    ckpt = tmp / "train_ckpt.pt"

    def run_engine() -> tuple[Timer, torch.nn.Module]:
        ckpt.unlink(missing_ok=True)  # a checkpoint of the same fingerprint would be resumed, not retrained
        m = copy.deepcopy(init)
        with Timer() as t:
            train(m, data, cfg, device=torch.device("cpu"), seed=0, checkpoint=ckpt, desc="bench", fingerprint="b")
        return t, m

    def run_bare() -> tuple[Timer, torch.nn.Module]:
        m = copy.deepcopy(init)
        with Timer() as t:
            bare_loop(m, data, cfg, steps, seed=0)
        return t, m

    run_engine(), run_bare()  # warm-up: oneDNN kernel selection, allocator, page cache
    eng, bare, pairs, eng_cpu, bare_cpu, pairs_cpu = [], [], [], [], [], []
    for r in range(repeats):
        order = (run_engine, run_bare) if r % 2 == 0 else (run_bare, run_engine)
        res = {fn.__name__: fn() for fn in order}
        (te, me), (tb, mb) = res["run_engine"], res["run_bare"]
        eng.append(images / te.s)
        bare.append(images / tb.s)
        pairs.append(tb.s / te.s)  # engine images/s over bare images/s
        eng_cpu.append(images / te.cpu)
        bare_cpu.append(images / tb.cpu)
        pairs_cpu.append(tb.cpu / te.cpu)
    # Same computation? The engine's best-on-val weights after one epoch are its final weights.
    diff = max(
        (a - b).abs().max().item()
        for a, b in zip(me.state_dict().values(), mb.state_dict().values())
        if a.is_floating_point()
    )
    ratio, ratio_cpu = median(pairs), median(pairs_cpu)

    def row(name: str, ips: list[float], ips_cpu: list[float], rel: str, rel_cpu: str) -> list[str]:
        return [
            name,
            f"{median(ips):.0f} ({min(ips):.0f}-{max(ips):.0f})",
            rel,
            f"{median(ips_cpu):.0f} ({min(ips_cpu):.0f}-{max(ips_cpu):.0f})",
            rel_cpu,
        ]

    rows = [
        row("bare PyTorch loop", bare, bare_cpu, "1", "1"),
        row(
            "passprune.engine.train",
            eng,
            eng_cpu,
            f"{ratio:.3f} ({min(pairs):.3f}-{max(pairs):.3f})",
            f"**{ratio_cpu:.3f}** ({min(pairs_cpu):.3f}-{max(pairs_cpu):.3f})",
        ),
    ]
    table = md_table(
        ["loop", "images per wall s", "ratio to bare (wall)", "images per CPU s", "ratio to bare (CPU)"], rows
    )
    notes = [
        f"{ARCH} width {WIDTH} on Fashion-MNIST 28x28 (the embedded default's model), batch {BATCH}, "
        f"{steps} steps ({images} images) + one pass over 256 validation images per run, CPU, "
        f"torch threads {threads}, {repeats} interleaved pairs after one warm-up pair; medians (range); ratios "
        "are medians of per-pair ratios.",
        "Judged on CPU seconds (user + system of this process): with one torch thread a run is single-threaded, "
        "so its CPU time is its wall time on an idle machine, while the wall-clock ratio swings with whatever "
        "else the shared machine runs (see its range).",
        f"Noise: the per-pair CPU ratios span {min(pairs_cpu):.2f}-{max(pairs_cpu):.2f} on this shared machine; "
        + (
            "the median says the engine is not measurably slower than the bare loop"
            if ratio_cpu >= 0.95
            else f"the median puts the engine {100 * (1 - ratio_cpu):.0f}% behind the bare loop"
        )
        + "; a difference of a few percent either way is below what these runs resolve.",
        f"Both loops compute the same thing: largest weight difference after a run {diff:.2e}.",
        "The engine's extra work per step: loss.item() (finite-loss check), running accuracy, tqdm; per "
        "epoch: a checkpoint written atomically.",
    ]
    return Part(
        "train",
        "1. Training-loop throughput: passprune.engine.train vs a bare PyTorch loop",
        ">= 0.95x the bare loop's images/s",
        ratio_cpu >= 0.95,
        table,
        notes,
        {
            "ratio": ratio_cpu,
            "ratio_wall": ratio,
            "pairs": pairs_cpu,
            "pairs_wall": pairs,
            "engine_ips": eng,
            "bare_ips": bare,
            "engine_ips_cpu": eng_cpu,
            "bare_ips_cpu": bare_cpu,
            "steps": steps,
            "batch": BATCH,
            "threads": threads,
            "max_weight_diff": diff,
            "ms_per_step_engine": 1000.0 * BATCH / median(eng_cpu),
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (the pipeline's search and fine-tuning jobs use 1 in the embedded default)",
    )
    a = ap.parse_args()
    run_part("train", lambda: measure(a.steps, a.repeats, a.threads))


if __name__ == "__main__":
    main()
