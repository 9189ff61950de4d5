"""Part 3: measured latency speed-up divided by the MACs ratio, for every registry architecture.

Why: MACs are not latency (Torch-Pruning issues #97/#149). For each architecture of ``passprune list`` the
dense network is pruned to 0.5 and 0.3 of its MACs by a global L1 ranking (group L1 norms, selected under
the budget by ``passprune.structure.PruningSpace.select_global``, as the ``l1_tp`` baseline does) and physically
pruned (``passprune.structure.prune_model``);
dense and pruned are timed with ``passprune.metrics.interleaved_latency`` (interleaved pairs, median of
per-pair ratios), the function every fine-tuning job uses. The figure is the latency speed-up over the MACs
speed-up: 1.0 means latency fell as much as MACs did, below 1 that it fell less.

Weights are a fresh initialisation: latency depends on the kept widths, not on the weights' values, but the
widths an L1 ranking picks on a trained network differ, so these are figures for *this* structure family.
Inputs: 32x32 RGB for the CIFAR-style architectures (their native size), 64x64 RGB for the ImageNet
ResNets (224x224 would take minutes per architecture on 2 CPU cores); 10 classes.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch_pruning as tp
from common import Part, md_table, run_part

from passprune.metrics import interleaved_latency
from passprune.models import build_model, list_models
from passprune.structure import PruningSpace, prune_model

IMAGENET_STYLE = {"resnet18", "resnet34", "resnet50"}  # torchvision ResNets: stem stride 4
TARGETS = (0.5, 0.3)


def input_size(arch: str) -> int:
    return 64 if arch in IMAGENET_STYLE else 32


def structures(model: torch.nn.Module, x0: torch.Tensor, targets: tuple[float, ...]) -> tuple[dict, PruningSpace]:
    """Group L1 norms (Torch-Pruning's ``GroupMagnitudeImportance``, mean-normalised per group so that a global
    ranking is meaningful), selected under each MACs target by ``PruningSpace.select_global``."""
    space = PruningSpace(model, x0, max_prune_frac=0.9)
    importance = tp.importance.GroupMagnitudeImportance(p=1)
    scores = {g.id: importance(g.tp_group).detach().float().cpu() for g in space.groups}
    return {t: space.select_global(scores, t) for t in targets}, space


def measure(archs: list[str], repeats_bs1: int, repeats_bs64: int, threads: int) -> Part:
    torch.set_num_threads(threads)
    rows, figures = [], {}
    for arch in archs:
        size = input_size(arch)
        torch.manual_seed(0)
        dense = build_model(arch, num_classes=10, in_channels=3).eval()
        x0 = torch.zeros(1, 3, size, size)
        found, space = structures(dense, x0, TARGETS)
        for t in TARGETS:
            pruned = prune_model(copy.deepcopy(dense), x0, found[t]).eval()
            macs_ratio = space.structure_macs_ratio(found[t])
            res = {}
            for bs, reps in ((1, repeats_bs1), (64, repeats_bs64)):
                res.update(
                    interleaved_latency(
                        dense, pruned, (3, size, size), torch.device("cpu"), batch_sizes=(bs,), repeats=reps, warmup=2
                    )
                )
            fig = {"input": size, "macs_ratio": macs_ratio, "dense_mmacs": space.dense_macs / 1e6}
            cells = [arch, f"{size}x{size}", f"{space.dense_macs / 1e6:.0f}", t, f"{1 / macs_ratio:.2f}x"]
            for bs in (1, 64):
                sp = res[f"speedup_latency_bs{bs}"]
                fig[f"bs{bs}"] = {
                    "dense_ms": res[f"latency_ms_dense_bs{bs}"],
                    "pruned_ms": res[f"latency_ms_bs{bs}"],
                    "speedup": sp,
                    "speedup_per_macs": sp * macs_ratio,
                }
                cells += [
                    f"{res[f'latency_ms_dense_bs{bs}']:.1f} / {res[f'latency_ms_bs{bs}']:.1f}",
                    f"{sp:.2f}x",
                    f"**{sp * macs_ratio:.2f}**",
                ]
            rows.append(cells)
            figures[f"{arch}@{t}"] = fig
            print(" | ".join(str(c) for c in cells), flush=True)
    table = md_table(
        [
            "arch",
            "input",
            "dense MMACs",
            "target",
            "MACs speed-up",
            "bs1 ms dense / pruned",
            "bs1 latency speed-up",
            "bs1 speed-up / MACs speed-up",
            "bs64 ms dense / pruned",
            "bs64 latency speed-up",
            "bs64 speed-up / MACs speed-up",
        ],
        rows,
    )
    notes = [
        f"CPU, torch threads {threads}, batch 1 ({repeats_bs1} interleaved pairs) and 64 ({repeats_bs64} pairs) "
        "after 2 warm-up runs each; latencies are medians, speed-ups medians of per-pair ratios.",
        "Structures: group L1 norms ranked globally by `PruningSpace.select_global` (max_prune_frac 0.9) on a "
        "fresh initialisation; "
        "MACs are passprune's conv+linear count of that structure.",
        "The dense network is timed again beside each target's pruned one: the gap between its two rows shows "
        "how far shared load moved the absolute times; the interleaved speed-ups are the robust figures.",
        "GPU: not measured (no GPU was lent to this task).",
    ]
    return Part(
        "latency",
        "3. Latency speed-up / MACs speed-up per architecture (CPU)",
        "none set in the issue (a figure to report)",
        None,
        table,
        notes,
        figures,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", nargs="*", default=None, help="default: every registered architecture")
    ap.add_argument("--repeats-bs1", type=int, default=10)
    ap.add_argument("--repeats-bs64", type=int, default=3)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (the pipeline's fine-tuning jobs measure latency with 1 in the embedded default)",
    )
    a = ap.parse_args()
    run_part("latency", lambda: measure(a.archs or list_models(), a.repeats_bs1, a.repeats_bs64, a.threads))


if __name__ == "__main__":
    main()
