"""Concurrent local GPU jobs get distinct slots (the lock logic; real GPUs are not needed to test it)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from passprune.devices import claim_gpu_slot, resolve_device

HOLD = """
import sys, time
from passprune.devices import claim_gpu_slot
print(claim_gpu_slot(int(sys.argv[1]), sys.argv[2]), flush=True)
time.sleep(30)
"""


def test_concurrent_processes_get_distinct_slots(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", HOLD, "2", str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        got = sorted(p.stdout.readline().strip() for p in procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert got == ["0", "1", "None"]  # two slots for two GPUs, the third job finds none free
    # once the holders are gone, the slots are free again
    assert claim_gpu_slot(2, tmp_path) == 0


def test_auto_is_cpu_without_cuda_and_cuda_request_fails_clearly():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda")
