"""Measured latency of dense vs pruned networks.

MACs are not latency (Torch-Pruning issues #97/#149): a pruned net's speedup is measured, not assumed.
Dense and pruned runs are *interleaved* (A, B, A, B, ...) so background load hits both alike, and the
speedup is the median of per-pair ratios.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def interleaved_latency(
    dense: nn.Module,
    pruned: nn.Module,
    input_shape: tuple[int, ...],
    device: torch.device,
    batch_sizes: tuple[int, ...] = (1, 64),
    repeats: int = 20,
    warmup: int = 3,
) -> dict:
    """Median latency (ms) of both models per batch size and the median per-pair speedup."""
    out: dict = {}
    models = {"dense": dense.eval(), "pruned": pruned.eval()}
    for bs in batch_sizes:
        x = torch.randn((bs, *input_shape), device=device)
        if device.type == "cuda":  # the layout the models are trained in (passprune.engine.prepare_model)
            x = x.contiguous(memory_format=torch.channels_last)
        for m in models.values():
            for _ in range(warmup):
                m(x)
        times: dict[str, list[float]] = {"dense": [], "pruned": []}
        for _ in range(repeats):
            for name, m in models.items():
                _sync(device)
                t = time.perf_counter()
                m(x)
                _sync(device)
                times[name].append((time.perf_counter() - t) * 1000.0)
        ratios = [d / p for d, p in zip(times["dense"], times["pruned"])]
        out[f"latency_ms_dense_bs{bs}"] = statistics.median(times["dense"])
        out[f"latency_ms_bs{bs}"] = statistics.median(times["pruned"])
        out[f"speedup_latency_bs{bs}"] = statistics.median(ratios)
    return out
