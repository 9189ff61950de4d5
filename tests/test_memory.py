"""passprune.memory: the saved-activation count behind ``passprune estimate``'s peak GPU memory, on a real net."""

from __future__ import annotations

import pytest
import torch

from passprune.memory import job_memory, saved_bytes
from passprune.models import build_model


def _count(batch: int, regime: str = "train", bf16: bool = False) -> int:
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10)
    return saved_bytes(model, torch.randn(batch, 3, 32, 32), regime, bf16)


def test_saved_activations_grow_with_the_batch_and_halve_in_bf16():
    two, four = _count(2), _count(4)
    assert two > 0 and four / two == pytest.approx(2.0, rel=0.05)
    # per image (the batch-independent bf16 copies of the weights cancel out): bf16 activations take half the bytes
    assert (_count(4, bf16=True) - _count(2, bf16=True)) / (four - two) == pytest.approx(0.5, rel=0.05)


def test_pass_and_taylor_keep_more_than_plain_training_and_eval_nothing():
    assert _count(2, "pass") > _count(2, "train") and _count(2, "taylor") > _count(2, "train")
    assert _count(2, "eval") == 0


def test_job_memory_is_linear_in_the_batch_and_counts_training_state():
    a, b = job_memory("resnet20", 32, 64, "train", False), job_memory("resnet20", 32, 128, "train", False)
    assert b.activations - a.activations == pytest.approx(a.activations, rel=0.05)
    params = sum(p.numel() * 4 for p in build_model("resnet20", num_classes=100).parameters())
    assert a.states == 3 * params  # weights, gradients, SGD momentum
    assert job_memory("resnet20", 32, 64, "pass", False).states == params  # the dense net is frozen
    assert b.peak_gib > a.peak_gib
