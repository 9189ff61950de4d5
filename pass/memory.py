"""Peak GPU memory of a job, counted on the CPU: what ``passprune estimate`` prints next to the card it assumes.

Why counting rather than a rule of thumb: the three kinds of GPU work here keep very different tensors alive for
backward. Plain training (pretrain, fine-tune, sparsity learning) saves every layer's input for its weight
gradient; PASS's search freezes the dense net, yet the prompt's gradient and the straight-through masks still
need the activations (the mask multiplications save each masked activation too); Taylor differentiates gates
after every norm layer, so it saves both. Autograd says exactly what it keeps:
:func:`torch.autograd.graph.saved_tensors_hooks` sees every tensor saved for backward, once per storage.

How: forward + backward of the architecture at batches 2 and 4 and the job's resolution, on the CPU, in the
precision the GPU job runs (bf16 autocast, which the engine, PASS's search and Taylor use on CUDA; the CPU's
autocast casts the same op classes: convolutions and linear layers), summing the bytes of every distinct storage
saved; activations grow linearly with the batch, so the per-image count times the job's batch is the job's.
Added: parameters (fp32), their gradients and the optimiser's state where the job trains them, and a stated
allowance for cuDNN workspaces and the caching allocator's fragmentation (:data:`OVERHEAD`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F

GIB = 1024**3
#: Extra fraction over the counted tensors for cuDNN workspaces, the CUDA context and allocator fragmentation:
#: an assumption, stated (PyTorch's caching allocator commonly reserves 10-30 % above what tensors hold).
OVERHEAD = 0.2
#: Fixed bytes per process for the CUDA context and kernels (about 0.5 GiB with cuDNN loaded): an assumption.
CONTEXT_BYTES = 0.5 * GIB
#: What each regime keeps: (parameters get gradients, optimiser state slots per parameter, gated like Taylor/PASS,
#: dense weights frozen). SGD with momentum keeps one slot; PASS trains only its small hypernetwork and prompt.
REGIMES: dict[str, tuple[bool, int, bool, bool]] = {
    "train": (True, 1, False, False),  # pretrain, fine-tune, sparsity learning: SGD + momentum
    "pass": (False, 0, True, True),  # PASS search: dense net frozen, masks and prompt differentiated
    "taylor": (False, 0, True, False),  # Taylor gates: gradients w.r.t. gates only, weights not frozen
    "taylor_tp": (True, 0, False, False),  # Torch-Pruning Taylor: gradients into the weights, no optimiser
    "eval": (False, 0, False, True),  # weight criteria: parameters only
}


@dataclass(frozen=True)
class Memory:
    """One job's expected peak: ``activations`` at its batch, ``states`` (parameters, gradients, optimiser)."""

    regime: str
    precision: str
    batch: int
    activations: float
    states: float

    @property
    def peak(self) -> float:
        """Bytes the card must hold: counted tensors plus the stated allowance and the CUDA context."""
        return (self.activations + self.states) * (1 + OVERHEAD) + CONTEXT_BYTES

    @property
    def peak_gib(self) -> float:
        return self.peak / GIB


@contextlib.contextmanager
def count_saved(out: dict[str, int], skip: tuple[torch.Tensor, ...] = ()) -> Iterator[None]:
    """Sum into ``out["bytes"]`` the bytes autograd saves for backward, each storage once (an in-place ReLU's
    output and the next convolution's input are one storage); tensors sharing storage with ``skip`` (the
    parameters, counted apart) are left out."""
    seen: set[int] = {t.untyped_storage().data_ptr() for t in skip}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in seen:
            seen.add(key)
            out["bytes"] = out.get("bytes", 0) + storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def saved_bytes(model: torch.nn.Module, x: torch.Tensor, regime: str = "train", bf16: bool = False) -> int:
    """Bytes autograd saves during one forward of ``model`` on ``x`` (CPU), set up as ``regime`` does it."""
    grads, _, gated, frozen = REGIMES[regime]
    counted: dict[str, int] = {}
    model.train(regime != "eval")
    for p in model.parameters():
        p.requires_grad_(not frozen)
    if regime == "eval":
        return 0
    cast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    x = x.clone().requires_grad_(regime == "pass")  # PASS: the prompt's gradient flows to the input
    with contextlib.ExitStack() as stack:
        if gated:
            from .structure import ChannelMasker, PruningSpace

            space = PruningSpace(model, x[:1].detach())
            masker = stack.enter_context(ChannelMasker(space, model))
            masker.set({g.id: torch.ones(g.size, requires_grad=True) for g in space.groups})
        with count_saved(counted, tuple(model.parameters())), cast:
            out = model(x)
        loss = F.cross_entropy(out.float(), torch.zeros(len(x), dtype=torch.long))
        if grads or gated or regime == "pass":
            loss.backward()
    model.zero_grad(set_to_none=True)
    return counted.get("bytes", 0)


@cache
def per_image_bytes(arch: str, resolution: int, regime: str, bf16: bool, num_classes: int = 100) -> tuple[int, int]:
    """(saved bytes per image, saved bytes independent of the batch), from counts at batch 2 and 4 (batch 1 cannot
    train BatchNorm on a net whose last feature map is 1x1, e.g. 28 px inputs): what does not grow with the batch
    (autocast's bf16 copies of the weights) must not be multiplied by it."""
    from .models import build_model

    torch.manual_seed(0)
    model = build_model(arch, num_classes=num_classes)
    two, four = (saved_bytes(model, torch.randn(b, 3, resolution, resolution), regime, bf16) for b in (2, 4))
    per_image = (four - two) // 2
    return per_image, two - 2 * per_image


def job_memory(arch: str, resolution: int, batch: int, regime: str, bf16: bool, num_classes: int = 100) -> Memory:
    """Expected peak of one job: saved activations at ``batch`` (linear in it); fp32 parameters, plus their
    gradients and optimiser slots where the regime trains them."""
    from .models import build_model

    grads, slots, _, _ = REGIMES[regime]
    params = sum(p.numel() * 4 for p in build_model(arch, num_classes=num_classes).parameters())
    per_image, fixed = per_image_bytes(arch, resolution, regime, bf16, num_classes)
    states = params * (1 + int(grads) + slots)
    return Memory(regime, "bf16 autocast" if bf16 else "fp32", batch, float(per_image * batch + fixed), float(states))


#: Set by :func:`full_precision`: the methods' and the engine's bf16 autocast stays off (a benchmark's fp32 row).
_FP32: contextvars.ContextVar[bool] = contextvars.ContextVar("passprune_full_precision", default=False)


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Run everything inside in fp32 on CUDA too: :func:`gpu_autocast` (PASS's search, Taylor) and the engine's
    training and evaluation autocast are off while it is active.

    Why a switch: those autocasts are opened inside the methods, and an inner enabled autocast wins over an outer
    disabled one, so a caller cannot get fp32 by wrapping a method in ``torch.autocast(enabled=False)``. The GPU
    benchmark (``bench/gpu.py``) uses it for its fp32 memory rows; jobs never do."""
    token = _FP32.set(True)
    try:
        yield
    finally:
        _FP32.reset(token)


def bf16_on(device: torch.device | str) -> bool:
    """Whether the jobs' bf16 autocast applies on ``device``: on CUDA, unless :func:`full_precision` is active."""
    return torch.device(device).type == "cuda" and not _FP32.get()


def gpu_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing at all on the CPU: PASS's search and Taylor's gradient passes use it, as the
    engine's training does, so that their saved activations take half the bytes (ResNet-50 at 224 px, batch 256:
    a 40 GB card holds them; in fp32 it does not). On the CPU no op changes, so CPU results stay byte-identical.
    Under :func:`full_precision` it is off on CUDA too (explicitly disabled, so an outer autocast is too)."""
    if bf16_on(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", enabled=False)
    return contextlib.nullcontext()
