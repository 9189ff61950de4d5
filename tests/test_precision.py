"""The full-precision switch (``passprune.memory.full_precision``): the GPU benchmark's fp32 rows must be fp32.

PASS's search, Taylor and the engine open their own bf16 autocast on CUDA, and an inner enabled autocast wins over
an outer disabled one, so ``bench/gpu.py`` once measured its "fp32" rows in bf16. The switch turns every one of
those autocasts off while it is active; jobs never set it. The decision is made on the device's type, so it is
checked here on a CPU-only machine; the benchmark's own rows record what the methods would do on a GPU.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import torch

from passprune.memory import bf16_on, full_precision, gpu_autocast

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_the_switch_turns_cuda_autocast_off_and_restores_it():
    assert bf16_on("cuda") and bf16_on(torch.device("cuda", 1)) and not bf16_on("cpu")
    with full_precision():
        assert not bf16_on("cuda") and not bf16_on("cpu")
        with full_precision():
            assert not bf16_on("cuda")
        assert not bf16_on("cuda")  # the inner exit restores the outer state, not the default
        off = gpu_autocast(torch.device("cuda"))
        assert isinstance(off, torch.autocast) and off.fast_dtype != torch.bfloat16  # explicitly disabled
    assert bf16_on("cuda")
    with pytest.raises(RuntimeError), full_precision():
        raise RuntimeError("a failing benchmark row")
    assert bf16_on("cuda")  # restored on an exception too
    on = gpu_autocast(torch.device("cuda"))
    assert isinstance(on, torch.autocast) and on.fast_dtype == torch.bfloat16
    for ctx in (contextlib.nullcontext(), full_precision()):
        with ctx:
            assert isinstance(gpu_autocast(torch.device("cpu")), contextlib.nullcontext)  # the CPU is never touched


def test_the_benchmark_runs_its_fp32_rows_under_the_switch():
    """bench/gpu.py's memory rows, at the dry mode's sizes on the CPU: the fp32 row ran with the methods' bf16
    autocast off, the bf16 row with it on (what they would do on a GPU)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import gpu
    finally:
        sys.path.remove(str(REPO / "bench"))
    s = gpu.sizes(cpu=True)
    rows = {p: gpu.peak_memory("taylor", p, torch.device("cpu"), s) for p in ("fp32", "bf16")}
    assert rows["fp32"]["methods_bf16_on_cuda"] is False and rows["bf16"]["methods_bf16_on_cuda"] is True
    assert rows["fp32"]["saved_tensor_gib"] > 0 and rows["fp32"]["peak_allocated_gib"] is None
