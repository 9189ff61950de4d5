"""Training and evaluation shared by pretraining, sparsity training and fine-tuning.

Plain functions in the spirit of torchvision's ``references/classification``: one ``train`` loop, one
``evaluate``; a checkpoint dict (model, optimizer, scheduler, epoch, best weights, history) written
atomically after every epoch, so an interrupted job resumes where it stopped. Schedules and the resume
path are shared with PASS's search (``passprune.schedule``, ``passprune.resume``). The checkpoint that is best
on the *validation* split is the one returned; the test split is never looked at here.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from . import resume
from .datasizes import steps_per_epoch
from .memory import bf16_on
from .schedule import Optimisers, follower_schedule, make_scheduler
from .settings import TrainSettings


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
    # bf16 autocast on GPU (no GradScaler needed); plain fp32 on CPU where it buys nothing here, and on the GPU
    # under passprune.memory.full_precision (a benchmark's fp32 row).
    if bf16_on(device):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cuda" if device.type == "cuda" else "cpu", enabled=False)


def _sgd(params: list[nn.Parameter], cfg: TrainSettings) -> torch.optim.SGD:
    """The main optimiser: SGD with the configured momentum (Nesterov only where momentum exists)."""
    return torch.optim.SGD(
        params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def _optimisers(
    opt: torch.optim.Optimizer, aux: torch.optim.Optimizer | None, cfg: TrainSettings, total_steps: int
) -> Optimisers:
    """The main optimiser on ``cfg.schedule``, and the auxiliary one (if any) on the same shape at its own
    rate (:func:`passprune.schedule.follower_schedule`), stepped in that order."""
    optim = Optimisers().add(opt, make_scheduler(opt, cfg.schedule, total_steps, peak_lr=cfg.lr))
    if aux is not None:
        optim.add(aux, make_scheduler(aux, follower_schedule(cfg.schedule), total_steps), prefix="aux_")
    return optim


@dataclass
class _Run:
    """What the epoch loop carries from one epoch to the next, and what a resume checkpoint restores."""

    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"top1": -1.0, "epoch": -1, "state": None})
    step: int = 0  # optimiser steps of the whole run (epochs before a resume included)
    images: int = 0  # training images of those steps


@dataclass
class _Loop:
    """The fixed parts of one training run: what every epoch and every step needs besides the ``_Run``.

    Why a class: the epoch, the step and the end-of-epoch bookkeeping are separate functions (each fits a
    screen), and they share a dozen inputs that would otherwise be passed along every call.
    """

    model: nn.Module
    data: Any
    cfg: TrainSettings
    device: torch.device
    seed: int
    optim: Optimisers
    steps: int  # optimiser steps per epoch
    checkpoint: Path | None
    fingerprint: str
    desc: str
    after_backward: Callable[[nn.Module, int], None] | None
    t0: float

    def restore(self, run: _Run) -> None:
        """Continue from this run's own checkpoint, if one exists: weights, optimisers, schedules, history."""
        stateful = {"model": self.model, **self.optim.stateful()}
        ck = resume.load(
            self.checkpoint,
            self.fingerprint,
            stateful,
            map_location=self.device,
            tag=self.desc,
            belongs="another configuration",
        )
        if ck is not None:
            run.start_epoch, run.history, run.best = ck["epoch"] + 1, ck["history"], ck["best"]
            print(f"[{self.desc}] resumed from {self.checkpoint} after epoch {ck['epoch']}", file=sys.stderr)

    def train_epoch(self, run: _Run, epoch: int) -> tuple[float, int, int]:
        """One epoch of ``steps`` full batches in the order seeded by (seed, epoch), so a resumed run draws
        exactly the batches the uninterrupted one would. Returns (summed loss, correct, images seen)."""
        self.model.train()
        gen = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(
            total=self.steps,
            desc=f"{self.desc} {epoch + 1}/{self.cfg.epochs}",
            file=sys.stderr,
            mininterval=5,
            disable=None,
            leave=False,
        )
        batches = self.data.train.batches(
            self.cfg.batch_size,
            shuffle=True,
            augment=self.cfg.augment,
            generator=gen,
            device=self.device,
            drop_last=True,
        )
        for i, (x, y) in enumerate(batches):
            if i >= self.steps:
                break
            out, loss = self.train_step(run, x, y, epoch, i)
            loss_sum += loss.item() * y.numel()
            correct += (out.argmax(1) == y).sum().item()
            seen += y.numel()
            bar.update(1)
        bar.close()
        return loss_sum, correct, seen

    def train_step(
        self, run: _Run, x: torch.Tensor, y: torch.Tensor, epoch: int, i: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, finite-loss check, backward, the method's gradient hook, every optimiser and schedule."""
        with _autocast(self.device):
            out = self.model(_to_input(x))
            loss = F.cross_entropy(out.float(), y, label_smoothing=self.cfg.label_smoothing)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(
                f"[{self.desc}] loss became {loss.item()} at epoch {epoch + 1}, step {i}; lower the learning rate "
                f"(lr={self.cfg.lr}) or check the data. The last good checkpoint is {self.checkpoint}"
            )
        self.optim.zero_grad()
        loss.backward()
        if self.after_backward is not None:
            self.after_backward(self.model, run.step)
        self.optim.step()
        run.step += 1
        run.images += y.numel()
        return out, loss

    def end_epoch(self, run: _Run, epoch: int, sums: tuple[float, int, int]) -> dict:
        """Validate, record the epoch, keep the weights if best on validation, write the resume checkpoint."""
        loss_sum, correct, seen = sums
        val = evaluate(self.model, self.data.val, self.device, self.cfg.eval_batch_size)
        rec = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_top1": 100.0 * correct / max(seen, 1),
            "val_top1": val["top1"],
            "val_loss": val["loss"],
            "lr": self.optim.lr,
            "seconds": time.time() - self.t0,
        }
        run.history.append(rec)
        print(
            f"[{self.desc}] epoch {epoch + 1}/{self.cfg.epochs} train_loss {rec['train_loss']:.4f} "
            f"val_top1 {val['top1']:.2f}",
            file=sys.stderr,
        )
        if val["top1"] > run.best["top1"]:
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            run.best = {"top1": val["top1"], "epoch": epoch + 1, "state": state}
        if self.checkpoint is not None:
            stateful = {"model": self.model, **self.optim.stateful()}
            extras = {"epoch": epoch, "history": run.history, "best": run.best, "config": asdict(self.cfg)}
            resume.save(self.checkpoint, self.fingerprint, stateful, **extras)
        return rec


def _check_one_batch(n_train: int, cfg: TrainSettings) -> None:
    """Every epoch drops its last partial batch: a split smaller than one batch would silently train nothing."""
    if cfg.epochs > 0 and n_train < cfg.batch_size:
        raise ValueError(
            f"the training split has {n_train} images, fewer than one batch ({cfg.batch_size}): "
            "raise data.train_subset or lower the batch size"
        )


def train(
    model: nn.Module,
    data,
    cfg: TrainSettings,
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
    opt = _sgd(params, cfg)
    _check_one_batch(len(data.train), cfg)
    steps = steps_per_epoch(len(data.train), cfg.batch_size, cfg.max_steps_per_epoch)
    optim = _optimisers(opt, aux_optimizer, cfg, steps * cfg.epochs)
    run = _Run()
    t0 = time.time()
    loop = _Loop(model, data, cfg, device, seed, optim, steps, checkpoint, fingerprint, desc, after_backward, t0)
    loop.restore(run)
    if cfg.epochs == 0:
        val = evaluate(model, data.val, device, cfg.eval_batch_size)
        return TrainResult(val["top1"], 0, [], 0.0, 0)
    # Every epoch takes exactly ``steps`` full batches (drop_last, steps <= len // batch_size), so the
    # epochs done before a resume consumed steps * batch_size images each; this run's are counted as it goes.
    run.step = run.start_epoch * steps
    run.images = run.start_epoch * steps * cfg.batch_size
    for epoch in range(run.start_epoch, cfg.epochs):
        rec = loop.end_epoch(run, epoch, loop.train_epoch(run, epoch))
        if on_epoch is not None:
            on_epoch(rec)
    best = run.best
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return TrainResult(
        best["top1"], best["epoch"], run.history, time.time() - t0, run.start_epoch, steps=run.step, images=run.images
    )


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
