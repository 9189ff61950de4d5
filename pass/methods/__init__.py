"""Method registry: every method answers "dense model + data + MACs target -> kept channels".

Fine-tuning, evaluation and reporting are shared, so methods differ only in what they choose. A method is
a function ``fn(ctx: SearchContext) -> SearchResult`` registered with its option defaults; the config
schema and the tests enumerate ``METHODS``.

Shared sparsity training: a method whose sparsity training does not depend on the MACs target registers that
training as its ``sparsify`` phase (with the options it reads, ``sparsify_options``). The workflow then runs it
once per (dataset, arch, seed, method, training options) as its own job (``passprune sparsify``) and every
target's search starts from its weights with ``SearchContext.sparsified`` set: the method only prunes. Without
that (a search run alone), the method trains first, as it always did (:func:`sparsity_phase`).

Device contract: the caller (the search stage) puts the model, the pruning space's example inputs and every
batch a method sees on ``ctx.device``; methods never move models themselves. :meth:`MethodSpec.run` checks
the model and the example inputs before the method starts (:func:`check_devices`), so a mismatch is one
clear error naming the tensor, not a crash deep inside a Torch-Pruning trace on the first GPU run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..registry import Registry
from ..structure import PruningSpace, Structure


@dataclass
class SearchContext:
    model: nn.Module  # the trained dense model, on ``device``; methods that train (sparsity, PASS) work on it in place
    space: PruningSpace  # built on ``model``; its example inputs are on ``device`` too
    data: Any  # passprune.data.DataBundle
    target: float | None  # fraction of dense MACs to keep; None in a shared sparsity training (it must not read it)
    options: dict[str, Any]
    device: torch.device  # where the model, the example inputs and every batch are (methods pass it to batches())
    seed: int
    workdir: Path  # where a method may save its own artefacts (PASS: hypernetwork + prompt) and checkpoints
    batch_size: int = 128
    log: Callable[[dict[str, float], int], None] = lambda metrics, step: None
    # Another run's structure.json (parsed), from ``passprune search --reference``: the controls
    # (random_widths, scratch) reuse its per-group widths; None for every other method.
    reference: dict[str, Any] | None = None
    # The shared sparsity training's facts and cost (``passprune sparsify``'s record ``info``) when ``model``
    # already holds its weights: a method with a ``sparsify`` phase then skips it. None: it trains here.
    sparsified: dict[str, Any] | None = None


@dataclass
class SearchResult:
    """A method's answer. ``info`` holds method-specific facts and its cost, which every method reports
    (see :func:`cost`): ``search_steps`` / ``search_images`` (optimisation or gradient steps of the search
    and the training images they consumed) and ``weight_train_steps`` / ``weight_train_images`` (training
    the fine-tuned weights already had before fine-tuning: sparsity training; 0 for every other method)."""

    structure: Structure
    info: dict[str, Any] = field(default_factory=dict)  # search cost and method-specific facts
    weights_changed: bool = False  # True when the method trained the dense weights (sparsity training)
    reinit: bool = False  # True: fine-tuning starts from a fresh random initialisation (``scratch``)


def cost(
    search_steps: int = 0, search_images: int = 0, weight_train_steps: int = 0, weight_train_images: int = 0
) -> dict[str, int]:
    """The cost keys every method puts in ``SearchResult.info`` (all zero for one-shot criteria)."""
    return {
        "search_steps": int(search_steps),
        "search_images": int(search_images),
        "weight_train_steps": int(weight_train_steps),
        "weight_train_images": int(weight_train_images),
    }


@dataclass
class MethodSpec:
    """A registered method: its function, option defaults and the capabilities the workflow plans around.

    The capability flags are what the rules need to know (``workflow/registry.yaml`` is generated from them by
    ``passprune registry --write``): which searches also save a hypernetwork (an extra output, and what
    hypernetwork transfer reads), which read another run's structure (``--reference``), which train the dense
    weights before fine-tuning, and which only run as part of a transfer.
    """

    name: str
    fn: Callable[[SearchContext], SearchResult]
    defaults: dict[str, Any]
    family: str  # "pass", "pass-ablation", "pass-transfer", "baseline", "control"
    summary: str
    saves_hypernet: bool = False
    needs_reference: bool = False
    trains_weights: bool = False
    transfer_only: bool = False
    #: Fine-tuning starts from a fresh initialisation and first replays the dense model's pretraining (``scratch``):
    #: the longest fine-tuning jobs of a study, which the workflow starts first so that none runs alone at the end.
    reinit: bool = False
    #: The target-independent sparsity training (returns its facts and cost), run once and shared by every target's
    #: search (``passprune sparsify``); None where the method has none or its training depends on the target (GReg).
    sparsify: Callable[[SearchContext], dict[str, Any]] | None = None
    #: The options that training reads: with the dataset, arch, seed and search batch size, its identity.
    sparsify_options: tuple[str, ...] = ()

    def options(self, given: dict[str, Any] | None) -> dict[str, Any]:
        given = dict(given or {})
        unknown = set(given) - set(self.defaults)
        if unknown:
            raise ValueError(f"method {self.name!r} has no options {sorted(unknown)}; it takes {sorted(self.defaults)}")
        return {**self.defaults, **given}

    def run(self, ctx: SearchContext) -> SearchResult:
        """Run the method under the device contract: every call goes through here, so the check is in one place."""
        check_devices(ctx, self.name)
        return self.fn(ctx)

    def shared_training(self) -> Callable[[SearchContext], dict[str, Any]]:
        """The target-independent sparsity training, or a clear error for a method without one."""
        if self.sparsify is None:
            raise ValueError(
                f"method {self.name!r} has no shared sparsity training (none at all, or one that depends on the "
                "MACs target, as GReg-1's); run its search on its own: passprune search --method " + self.name
            )
        return self.sparsify

    def run_sparsify(self, ctx: SearchContext) -> dict[str, Any]:
        """Run the shared sparsity training alone (under the device contract), on ``ctx.model`` in place."""
        train = self.shared_training()
        check_devices(ctx, self.name)
        return train(ctx)

    def training_options(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """The options the shared sparsity training reads, defaults filled (:attr:`sparsify_options`)."""
        options = self.options(given)
        return {k: options[k] for k in self.sparsify_options}


def sparsity_phase(ctx: SearchContext, train: Callable[[SearchContext], dict[str, Any]]) -> dict[str, Any]:
    """A sparsity-training method's training facts and cost: none when ``epochs`` is 0; the shared training's when
    ``ctx.model`` already holds its weights (``ctx.sparsified``, from ``passprune sparsify``); else ``train(ctx)``
    here, in the search job itself (a search run alone, and GReg, whose training depends on the target)."""
    if ctx.options["epochs"] <= 0:
        return cost()
    if ctx.sparsified is not None:
        return dict(ctx.sparsified)
    return train(ctx)


class DeviceContractError(ValueError):
    """The model or the space's example inputs are not on ``ctx.device`` when a method starts."""


def _on(tensor_device: torch.device, want: torch.device) -> bool:
    """Same device; an unindexed device (``cuda``) matches any index of its type, as torch itself places it."""
    if tensor_device.type != want.type:
        return False
    return tensor_device.index is None or want.index is None or tensor_device.index == want.index


def check_devices(ctx: SearchContext, method: str) -> None:
    """Fail at once, naming the first parameter, buffer or input that is not on ``ctx.device``.

    Why before the method rather than inside it: a misplaced model only shows itself later, as a device clash
    in the middle of a Torch-Pruning trace or a training step, hours into a cluster job; here the message says
    which tensor and what to fix (the caller moves everything; methods never do)."""
    want = torch.device(ctx.device)
    models = [("model", ctx.model)] + ([("space's model", ctx.space.model)] if ctx.space.model is not ctx.model else [])
    for what, model in models:
        named = itertools.chain(
            (("parameter", n, t) for n, t in model.named_parameters()),
            (("buffer", n, t) for n, t in model.named_buffers()),
        )
        for kind, name, t in named:
            if not _on(t.device, want):
                raise DeviceContractError(
                    f"method {method!r}: the {what}'s {kind} {name!r} is on {t.device}, but ctx.device is {want}; "
                    "move the model to ctx.device before the method runs (the search stage does; methods never "
                    "move models)"
                )
    x = ctx.space.example_inputs
    if not _on(x.device, want):
        raise DeviceContractError(
            f"method {method!r}: the pruning space's example_inputs are on {x.device}, but ctx.device is {want}; "
            "build the PruningSpace with example inputs on ctx.device (the search stage does)"
        )


METHODS: Registry[MethodSpec] = Registry("method")


def register_method(
    name: str,
    *,
    family: str,
    summary: str,
    saves_hypernet: bool = False,
    needs_reference: bool = False,
    trains_weights: bool = False,
    transfer_only: bool = False,
    reinit: bool = False,
    sparsify: Callable[[SearchContext], dict[str, Any]] | None = None,
    sparsify_options: tuple[str, ...] = (),
    **defaults: Any,
):
    unknown = set(sparsify_options) - set(defaults)
    if unknown:
        raise ValueError(f"method {name!r}: sparsify_options {sorted(unknown)} are not among its options")

    def deco(fn: Callable[[SearchContext], SearchResult]):
        METHODS.register(name)(
            MethodSpec(
                name,
                fn,
                defaults,
                family,
                summary,
                saves_hypernet=saves_hypernet,
                needs_reference=needs_reference,
                trains_weights=trains_weights,
                transfer_only=transfer_only,
                reinit=reinit,
                sparsify=sparsify,
                sparsify_options=tuple(sparsify_options),
            )
        )
        return fn

    return deco


def baseline(name: str, summary: str, **options: Any):
    """Register a baseline: a published pruning method that PASS is compared against (``family="baseline"``)."""
    return register_method(name, family="baseline", summary=summary, **options)


def control(name: str, summary: str, reinit: bool = False, **options: Any):
    """Register a control: a structure derived from a reference method's (PASS by default), so it needs one.

    Controls answer "what does the reference's structure owe to which channels / its init?", which is why
    each reads the reference's structure.json and why the workflow orders them after it."""
    return register_method(
        name,
        family="control",
        summary=summary,
        needs_reference=True,
        reinit=reinit,
        **{"reference": "pass", **options},
    )


def list_methods(pattern: str = "*") -> list[str]:
    _load()
    return METHODS.names(pattern)


def get_method(name: str) -> MethodSpec:
    _load()
    return METHODS.get(name)


def _load() -> None:
    from . import controls, faithful, importance, sparsity  # noqa: F401  (registration side effects)
    from .passnet import search  # noqa: F401
