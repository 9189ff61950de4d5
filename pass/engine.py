"""Training and evaluation shared by pretraining, sparsity training and fine-tuning.

Plain functions in the spirit of torchvision's ``references/classification``: one ``train`` loop, one
``evaluate``; a checkpoint dict (model, optimizer, scheduler, epoch, best weights, history) written
atomically after every epoch, so an interrupted job resumes where it stopped. The checkpoint that is best
on the *validation* split is the one returned; the test split is never looked at here.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .files import atomic_torch_save
from .settings import TrainSettings

#: The optimisation settings live with every other stage setting (one home for defaults); the engine's name
#: for them is kept because every training loop reads ``TrainConfig``.
TrainConfig = TrainSettings


@dataclass
class TrainResult:
    best_val_top1: float
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from_epoch: int = 0
    steps: int = 0  # optimiser steps of the whole run (epochs before a resume included)
    images: int = 0  # training images those steps consumed (epochs before a resume included)


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """channels_last on CUDA only (cuDNN's preferred layout). On CPU it is off: torch 2.14.1's oneDNN path
    corrupts memory (double free / segfault) in the backward pass of a 1x1 stride-2 convolution whose input has
    2-7 channels in channels_last -- exactly the shortcut convolutions of a pruned ResNet (measured on this
    project's AMD EPYC CI machine; `tests/test_engine.py` keeps a regression check)."""
    fmt = torch.channels_last if torch.device(device).type == "cuda" else torch.contiguous_format
    return model.to(device=device, memory_format=fmt)


def _to_input(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and x.is_cuda else x


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split,
    device: torch.device,
    batch_size: int = 512,
    input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over a whole split (BatchNorm in eval mode)."""
    was = model.training
    model.eval()
    correct, total, loss_sum = 0, 0, 0.0
    for x, y in split.batches(batch_size, shuffle=False, augment=False, device=device):
        x = _to_input(x)
        if input_transform is not None:
            x = input_transform(x)
        with _autocast(device):
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        total += y.numel()
    model.train(was)
    return {"top1": 100.0 * correct / max(total, 1), "loss": loss_sum / max(total, 1), "n": total}


def _autocast(device: torch.device):
    # bf16 autocast on GPU (no GradScaler needed); plain fp32 on CPU where it buys nothing here.
    return (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )


def _steps_per_epoch(n: int, cfg: TrainConfig) -> int:
    steps = max(1, n // cfg.batch_size)
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(total_steps, 2), pct_start=0.25)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)
    raise ValueError(f"unknown schedule {cfg.schedule!r}; use cosine, onecycle or constant")


def _aux_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """The auxiliary optimiser's schedule: the main one's shape at its own learning rate (OneCycle's peak is
    the main lr, so it becomes cosine here)."""
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _s: 1.0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))


def train(
    model: nn.Module,
    data,
    cfg: TrainConfig,
    *,
    device: torch.device,
    seed: int,
    checkpoint: Path | None = None,
    params: Iterable[nn.Parameter] | None = None,
    after_backward: Callable[[nn.Module, int], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    desc: str = "train",
    fingerprint: str = "",
    aux_optimizer: torch.optim.Optimizer | None = None,
) -> TrainResult:
    """Train ``model`` on ``data.train``; keep the weights best on ``data.val``; resume from ``checkpoint``.

    ``after_backward(model, step)`` lets sparsity-inducing methods add their regulariser's gradient
    (Torch-Pruning pruners' ``regularize``) without a second loop. ``on_epoch`` receives each epoch's
    metrics (the tracking mirror). A checkpoint is resumed only if its ``fingerprint`` (a digest of
    everything the run depends on) matches, so a stale checkpoint of another structure is never reused.

    ``aux_optimizer`` trains extra parameters of ``model`` (keep them out of ``params``) with an optimiser of
    their own, stepped with the main one: PASS's prompt at fine-tuning (Adam at the method's prompt_lr, as
    VPNs trains weights and prompt together with separate optimisers). Its learning rate follows the main
    schedule's shape (cosine for cosine and onecycle, constant for constant); its state is checkpointed.
    """
    model = prepare_model(model, device)
    params = list(params) if params is not None else [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )
    if cfg.epochs > 0 and len(data.train) < cfg.batch_size:  # drop_last: not one step would be taken
        raise ValueError(
            f"the training split has {len(data.train)} images, fewer than one batch ({cfg.batch_size}): "
            "raise data.train_subset or lower the batch size"
        )
    steps = _steps_per_epoch(len(data.train), cfg)
    sched = make_scheduler(opt, cfg, steps * cfg.epochs)
    aux_sched = _aux_scheduler(aux_optimizer, cfg, steps * cfg.epochs) if aux_optimizer is not None else None
    start_epoch, history = 0, []
    best = {"top1": -1.0, "epoch": -1, "state": None}
    t0 = time.time()
    ck = None
    if checkpoint is not None and Path(checkpoint).exists():
        ck = torch.load(checkpoint, map_location=device, weights_only=False)
        if ck.get("fingerprint", "") != fingerprint:
            print(f"[{desc}] ignoring {checkpoint}: it belongs to another configuration", file=sys.stderr)
            ck = None
    if ck is not None:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if aux_optimizer is not None:
            aux_optimizer.load_state_dict(ck["aux_optimizer"])
            aux_sched.load_state_dict(ck["aux_scheduler"])
        start_epoch, history, best = ck["epoch"] + 1, ck["history"], ck["best"]
        print(f"[{desc}] resumed from {checkpoint} after epoch {ck['epoch']}", file=sys.stderr)
    if cfg.epochs == 0:
        val = evaluate(model, data.val, device, cfg.eval_batch_size)
        return TrainResult(val["top1"], 0, [], 0.0, 0)
    step = start_epoch * steps
    # Every epoch takes exactly ``steps`` full batches (drop_last, steps <= len // batch_size), so the
    # epochs done before a resume consumed steps * batch_size images each; this run's are counted below.
    images = start_epoch * steps * cfg.batch_size
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(
            total=steps,
            desc=f"{desc} {epoch + 1}/{cfg.epochs}",
            file=sys.stderr,
            mininterval=5,
            disable=None,
            leave=False,
        )
        for i, (x, y) in enumerate(
            data.train.batches(
                cfg.batch_size, shuffle=True, augment=cfg.augment, generator=gen, device=device, drop_last=True
            )
        ):
            if i >= steps:
                break
            with _autocast(device):
                out = model(_to_input(x))
                loss = F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(
                    f"[{desc}] loss became {loss.item()} at epoch {epoch + 1}, step {i}; lower the learning rate "
                    f"(lr={cfg.lr}) or check the data. The last good checkpoint is {checkpoint}"
                )
            opt.zero_grad(set_to_none=True)
            if aux_optimizer is not None:
                aux_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if after_backward is not None:
                after_backward(model, step)
            opt.step()
            sched.step()
            if aux_optimizer is not None:
                aux_optimizer.step()
                aux_sched.step()
            step += 1
            images += y.numel()
            loss_sum += loss.item() * y.numel()
            correct += (out.argmax(1) == y).sum().item()
            seen += y.numel()
            bar.update(1)
        bar.close()
        val = evaluate(model, data.val, device, cfg.eval_batch_size)
        rec = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_top1": 100.0 * correct / max(seen, 1),
            "val_top1": val["top1"],
            "val_loss": val["loss"],
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.time() - t0,
        }
        history.append(rec)
        print(
            f"[{desc}] epoch {epoch + 1}/{cfg.epochs} train_loss {rec['train_loss']:.4f} val_top1 {val['top1']:.2f}",
            file=sys.stderr,
        )
        if val["top1"] > best["top1"]:
            best = {
                "top1": val["top1"],
                "epoch": epoch + 1,
                "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            }
        if checkpoint is not None:
            atomic_torch_save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "epoch": epoch,
                    "history": history,
                    "best": best,
                    "config": asdict(cfg),
                    "fingerprint": fingerprint,
                    **(
                        {"aux_optimizer": aux_optimizer.state_dict(), "aux_scheduler": aux_sched.state_dict()}
                        if aux_optimizer is not None
                        else {}
                    ),
                },
                checkpoint,
            )
        if on_epoch is not None:
            on_epoch(rec)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return TrainResult(best["top1"], best["epoch"], history, time.time() - t0, start_epoch, steps=step, images=images)


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    split,
    device: torch.device,
    batches: int,
    batch_size: int = 128,
    seed: int = 0,
    input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """Re-estimate BatchNorm running statistics on training batches, weights untouched ("adaptive BN").

    Why: removing channels shifts the inputs of the next layer's BN, whose running mean/var were measured
    on the dense network; without re-estimation even a good structure can read as chance accuracy before
    fine-tuning. Applied identically to every method, it makes "accuracy before fine-tuning" measure the
    structure rather than stale statistics. Returns the number of batches used.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if batches <= 0 or not bns:
        return 0
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen
    was = model.training
    model.eval()
    for m in bns:
        m.train()
    gen = torch.Generator().manual_seed(seed)
    n = 0
    for x, _ in split.batches(batch_size, shuffle=True, augment=False, generator=gen, device=device):
        if n >= batches:
            break
        x = _to_input(x)
        model(input_transform(x) if input_transform is not None else x)
        n += 1
    model.train(was)
    for m, (mom, tr) in zip(bns, saved):  # after model.train(), which would reset the BN flags
        m.momentum = mom
        m.train(tr)
    return n
