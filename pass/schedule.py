"""Learning-rate schedules, and optimisers stepped with them: one home for the engine and PASS's search.

Why one module: both loops decay their rates, and both must resume exactly. Every schedule here is a torch
``LRScheduler`` stepped once after each optimiser step, so its position lives in its ``state_dict`` and a
resumed run (:mod:`passprune.resume`) continues at the very rate it stopped at, whichever loop it is.

Two cosines exist and stay distinct on purpose: the engine's is torch's ``CosineAnnealingLR`` (a recursive
update of the previous rate); PASS's search has always used the closed form :func:`cosine_factor` (a function
of the step alone). Their rates differ in the last bits, so merging them would change every trained model;
``closed_form`` picks which one a loop runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

#: The schedules a loop accepts (PASS's search: constant and cosine only; see ``passnet.search.check_options``).
SCHEDULES = ("cosine", "onecycle", "constant")


def cosine_factor(step: int, total: int) -> float:
    """Closed-form cosine decay from 1 (step 0) to 0 (step ``total``): the rate depends on the step alone."""
    return 0.5 * (1.0 + math.cos(math.pi * step / max(total, 1)))


def _one(_step: int) -> float:
    return 1.0


def make_scheduler(
    opt: torch.optim.Optimizer,
    schedule: str,
    total_steps: int,
    *,
    peak_lr: float | None = None,
    closed_form: bool = False,
) -> LRScheduler:
    """The scheduler of ``schedule`` over ``total_steps`` optimiser steps.

    ``peak_lr`` is OneCycle's maximum rate (the configured lr). ``closed_form`` selects PASS's cosine
    (:func:`cosine_factor` through ``LambdaLR``, which gives ``initial_lr * factor(step)`` exactly as the
    search computed it by hand before) instead of torch's recursive ``CosineAnnealingLR``.
    """
    if schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=peak_lr, total_steps=max(total_steps, 2), pct_start=0.25)
    if schedule == "cosine" and closed_form:
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_factor(s, total_steps))
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total_steps, 1))
    if schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, _one)
    raise ValueError(f"unknown schedule {schedule!r}; use cosine, onecycle or constant")


def follower_schedule(schedule: str) -> str:
    """The schedule of a second optimiser that follows the main one's shape at its own rate: OneCycle peaks
    at the *main* lr, so its follower decays by cosine instead; constant stays constant."""
    return "constant" if schedule == "constant" else "cosine"


@dataclass
class Optimisers:
    """One or more optimisers, each with its schedule, zeroed and stepped together in the order added.

    Why: a loop's step is "zero, backward, step every optimiser and then its schedule"; keeping that order in
    one place keeps it identical across loops and across a resume. Each pair is checkpointed under
    ``<prefix>optimizer`` and ``<prefix>scheduler`` (the engine's names: ``optimizer``, ``aux_optimizer``).
    """

    pairs: list[tuple[str, torch.optim.Optimizer, LRScheduler]] = field(default_factory=list)

    def add(self, opt: torch.optim.Optimizer, sched: LRScheduler, prefix: str = "") -> Optimisers:
        self.pairs.append((prefix, opt, sched))
        return self

    def zero_grad(self) -> None:
        for _, opt, _ in self.pairs:
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for _, opt, sched in self.pairs:
            opt.step()
            sched.step()

    def stateful(self) -> dict[str, Any]:
        """Every optimiser and scheduler by its checkpoint name (for :mod:`passprune.resume`)."""
        return dict(self._named())

    def _named(self) -> Iterator[tuple[str, Any]]:
        for prefix, opt, sched in self.pairs:
            yield f"{prefix}optimizer", opt
            yield f"{prefix}scheduler", sched

    @property
    def lr(self) -> float:
        """The first optimiser's current rate (the one the loops log)."""
        return self.pairs[0][1].param_groups[0]["lr"]
