"""PASS search: jointly train the prompt V, the encoder g_w and the hypernetwork theta on the frozen dense
network, with hard masks in the forward pass and straight-through gradients, under a global MACs budget.

Each step: (h0, c0) = g_w(V); scores = theta(stats, h0, c0); p = sigmoid(scores / T); the channels are
ranked globally (on scores / T by default: ``rank_on``) and the largest prefix of the ranking whose masked
network's MACs (counting the next layer's input shrinkage) are <= the budget is kept; hard masks forward,
dL/dp = dL/dmask backward; loss = CE(f(x + V; masks), y). The CNN is frozen. Masks multiply the inputs of
the layers that read each group (``masking.ReaderMasker``), so that pruned channels get gradients too.
After search, deterministic masks from the trained hypernetwork become the structure.

Every option is in ``PASS_DEFAULTS`` and documented in docs/method.md. The ablations are full PASS with
exactly one field of :class:`PassVariant` changed (``ABLATIONS``); :func:`effective_config` gives what a
method runs with, so that claim is testable.

The search is resumable: every ``checkpoint_every`` steps it saves all of its state (hypernetwork, encoder,
prompt, optimiser, schedule, step, data-order generator, best-so-far selection, RNG) to ``workdir/search_ckpt.pt``
through the engine's resume path (``passprune.resume``; the schedule is ``passprune.schedule``'s);
rerunning the same search (same fingerprint: options, target, seed, data, dense weights) in the same folder
continues from there and gives exactly the uninterrupted run's result on CPU.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ... import resume
from ...engine import evaluate, recalibrate_bn
from ...files import atomic_torch_save
from ...memory import gpu_autocast
from ...schedule import Optimisers, make_scheduler
from ...structure import PruningSpace, Structure
from .. import SearchContext, SearchResult, cost, register_method
from .encoder import ConstantState, PromptEncoder
from .hypernetwork import RecurrentHyperNetwork
from .masking import ReaderMasker
from .prompt import PadPrompt, pad_width
from .stats import CHANNEL_STATS, channel_statistics, group_descriptors

PASS_DEFAULTS: dict[str, Any] = dict(
    steps=200,  # optimisation steps of the search
    lr=3e-3,  # Adam, for theta and w
    prompt_lr=3e-2,  # Adam, for V (VPNs uses 1e-4; a diagnosis study picks ours)
    hidden=64,  # LSTM hidden size
    embed=64,  # statistics embedding size
    temperature=1.0,  # p = sigmoid(score / T)
    prompt_width=None,  # pad width in px; None = 16 px scaled from 224 px to the input size
    anneal_frac=0.5,  # the MACs budget tightens linearly from 1.0 to the target over this fraction of steps
    bn_mode="batch",  # batch: BN normalises with batch statistics during search (frozen affine); eval: running stats
    bn_recalibration_batches=20,  # before every masked validation (same as fine-tuning's before-FT number)
    select_on_val=False,  # after the budget anneal, keep the hypernetwork state whose structure is best on val
    log_every=25,
    bilinear=False,  # [ours] add <W_q h, phi(stats_j)> to the linear mapper's scores (not in the paper)
    autoregressive=False,  # [ours] feed the previous group's soft keep ratio to the next LSTM step
    rank_on="score",  # score: rank on score / T (never saturates); prob: rank on sigmoid(score / T)
    min_channels=1,  # every group keeps at least this many channels
    protect_first=False,  # the first prunable group keeps all its channels
    prompt_at_eval=False,  # fine-tune and test the pruned network with the learned prompt (passprune finetune)
    checkpoint_every=50,  # steps between resumable checkpoints (workdir/search_ckpt.pt); 0 = none
    weight_decay=0.0,  # Adam's L2 weight decay on theta, w and V (docs/paper.md §2.4: 1e-4 in the paper's protocol)
    schedule="constant",  # constant | cosine: the learning rates decay to 0 over `steps` (paper's protocol: cosine)
)

#: Options that cannot change the search's trajectory: a checkpoint written under other values is still valid.
_RESUME_NEUTRAL = ("checkpoint_every", "prompt_at_eval")
#: Options that shape the hypernetwork itself: a transferred hypernetwork keeps its source's values.
_ARCH_OPTIONS = ("hidden", "embed", "bilinear", "autoregressive", "temperature")
CHECKPOINT = "search_ckpt.pt"


@dataclass(frozen=True)
class PassVariant:
    """The structural switches the ablations turn off, one each."""

    prompt: bool = True
    recurrent: bool = True
    stats: bool = True
    strategy: str = "global"  # global | uniform


FULL_PASS = PassVariant()
#: ablation -> (the one field of the full PASS variant it changes, summary)
ABLATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "pass_noprompt": (
        {"prompt": False},
        "PASS without the visual prompt: no V, the LSTM's initial state is a learned vector",
    ),
    "pass_norecur": ({"recurrent": False}, "PASS without recurrence: a per-step MLP, no state carried between groups"),
    "pass_uniform": (
        {"strategy": "uniform"},
        "PASS scores, but every group pruned by the same ratio (no global ranking)",
    ),
    "pass_nostats": ({"stats": False}, "PASS with learned per-group embeddings instead of weight statistics"),
}
PASS_VARIANTS: dict[str, PassVariant] = {
    "pass": FULL_PASS,
    **{n: replace(FULL_PASS, **ch) for n, (ch, _) in ABLATIONS.items()},
}


def effective_config(method: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything a PASS method runs with, flat: ``variant.<field>`` and its options (defaults if not given)."""
    from .. import get_method

    opts = get_method(method).options(options)
    return {**{f"variant.{k}": v for k, v in asdict(PASS_VARIANTS[method]).items()}, **opts}


def check_options(o: dict[str, Any]) -> None:
    """Fail early, with the option's name, on values the search would otherwise misread."""
    if o["bn_mode"] not in ("batch", "eval"):
        raise ValueError(f"bn_mode must be 'batch' or 'eval', got {o['bn_mode']!r}")
    if o["rank_on"] not in ("score", "prob"):
        raise ValueError(f"rank_on must be 'score' or 'prob', got {o['rank_on']!r}")
    if int(o["min_channels"]) != o["min_channels"] or o["min_channels"] < 1:
        raise ValueError(f"min_channels must be an integer >= 1, got {o['min_channels']!r}")
    if int(o["checkpoint_every"]) != o["checkpoint_every"] or o["checkpoint_every"] < 0:
        raise ValueError(
            f"checkpoint_every must be an integer >= 0 (0 = no checkpoints), got {o['checkpoint_every']!r}"
        )
    if o["temperature"] <= 0:
        raise ValueError(f"temperature must be > 0, got {o['temperature']!r}")
    if o["schedule"] not in ("constant", "cosine"):
        raise ValueError(f"pass option schedule: {o['schedule']!r}; use constant or cosine")


class _StraightThrough(torch.autograd.Function):
    """Forward: the hard 0/1 mask, exactly. Backward: dL/dp = dL/dmask (straight-through estimator)."""

    @staticmethod
    def forward(ctx, p: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class PassSearcher(nn.Module):
    """V + g_w + theta for one pruning space; ``structure()`` gives the hard choice at a target."""

    def __init__(
        self, space: PruningSpace, in_channels: int, image_size: int, variant: PassVariant, options: dict
    ) -> None:
        super().__init__()
        self.space, self.variant, self.options = space, variant, options
        self.prompt = (
            PadPrompt(in_channels, image_size, options["prompt_width"] or pad_width(image_size))
            if variant.prompt
            else None
        )
        self.encoder = (
            PromptEncoder(in_channels, options["hidden"]) if variant.prompt else ConstantState(options["hidden"])
        )
        self.hyper = RecurrentHyperNetwork(
            [g.size for g in space.groups],
            len(CHANNEL_STATS),
            3,
            hidden=options["hidden"],
            embed=options["embed"],
            recurrent=variant.recurrent,
            use_stats=variant.stats,
            bilinear=options["bilinear"],
            autoregressive=options["autoregressive"],
            temperature=options["temperature"],
        )
        self.register_buffer("desc", group_descriptors(space))
        self.stats: list[torch.Tensor] = channel_statistics(space)
        self.protected: tuple[str, ...] = (space.groups[0].id,) if options["protect_first"] else ()

    def to(self, *args, **kwargs):  # stats is a plain list of tensors
        out = super().to(*args, **kwargs)
        self.stats = [s.to(*args, **kwargs) for s in self.stats]
        return out

    def logits(self) -> dict[str, torch.Tensor]:
        """score / T per group: the unbounded ranking key (``rank_on: score``)."""
        state = self.encoder(self.prompt.masked() if self.prompt is not None else None)
        scores = self.hyper(self.stats, self.desc, state)
        T = self.options["temperature"]
        return {g.id: s / T for g, s in zip(self.space.groups, scores)}

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {k: torch.sigmoid(v) for k, v in self.logits().items()}

    def _ranking(self, logits: dict[str, torch.Tensor], probs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # sigmoid is monotone, so both keys order channels alike until p saturates at exactly 1.0 in float32
        # (score / T > ~17, reached in long searches); then "prob" breaks the ties by channel index.
        return logits if self.options["rank_on"] == "score" else probs

    def select(self, ranking: dict[str, torch.Tensor], target: float) -> Structure:
        kw = {"min_channels": int(self.options["min_channels"]), "protect": self.protected}
        if self.variant.strategy == "uniform":
            return self.space.select_uniform(ranking, target, **kw)
        return self.space.select_global(ranking, target, **kw)

    def straight_through_masks(self, target: float) -> tuple[dict[str, torch.Tensor], Structure]:
        logits = self.logits()
        probs = {k: torch.sigmoid(v) for k, v in logits.items()}
        structure = self.select(self._ranking(logits, probs), target)
        masks = {}
        for gid, p in probs.items():
            hard = torch.zeros_like(p)
            hard[torch.as_tensor(structure[gid], device=p.device)] = 1.0
            masks[gid] = _StraightThrough.apply(p, hard)
        return masks, structure

    @torch.no_grad()
    def structure(self, target: float) -> Structure:
        logits = self.logits()
        return self.select(self._ranking(logits, {k: torch.sigmoid(v) for k, v in logits.items()}), target)

    def apply_prompt(self, x: torch.Tensor) -> torch.Tensor:
        return self.prompt(x) if self.prompt is not None else x


class _DenseBN:
    """The dense model's BatchNorm running statistics and flags, captured once and put back.

    Why: validation candidates (``select_on_val``) and the final masked evaluation re-estimate BN statistics
    in place for the structure they measure. The search itself must keep normalising with the *dense*
    statistics (``bn_mode: eval``) and the dense model must leave the search as it came in.
    """

    def __init__(self, model: nn.Module) -> None:
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.buffers = [{k: b.detach().clone() for k, b in m.named_buffers(recurse=False)} for m in self.bns]
        self.flags = [(m.momentum, m.training) for m in self.bns]

    @torch.no_grad()
    def restore_stats(self) -> None:
        for m, saved in zip(self.bns, self.buffers):
            for k, b in m.named_buffers(recurse=False):
                b.copy_(saved[k])

    def restore(self) -> None:
        self.restore_stats()
        for m, (momentum, training) in zip(self.bns, self.flags):
            m.momentum = momentum
            m.train(training)


@dataclass
class _Progress:
    """Everything of a running search besides the trained modules and the optimiser (checkpointed)."""

    epoch_gen_state: torch.Tensor  # data-order generator state before this epoch's ``batches`` call
    epoch_batches: int = 0  # batches of this epoch already trained on
    step: int = 0
    images: int = 0  # training images through the masked network
    val_images: int = 0  # images used by validation candidates (BN re-estimation + validation split)
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"val": -1.0})
    elapsed: float = 0.0  # seconds of search loop before this process (resumed runs)


def search_fingerprint(
    ctx: SearchContext, variant: PassVariant, train_parts: tuple[str, ...], searcher: nn.Module
) -> str:
    """Digest of everything the search's trajectory depends on: a checkpoint resumes only a search with the
    same options, target, seed, batch size, data sizes, pruning space, dense weights and initial state."""
    o = {k: v for k, v in ctx.options.items() if k not in _RESUME_NEUTRAL}
    h = hashlib.sha256(
        json.dumps(
            {
                "options": o,
                "target": ctx.target,
                "seed": ctx.seed,
                "variant": asdict(variant),
                "train_parts": list(train_parts),
                "batch_size": ctx.batch_size,
                "n_train": len(ctx.data.train),
                "n_val": len(ctx.data.val),
                "groups": [(g.id, g.size) for g in ctx.space.groups],
                "max_prune_frac": ctx.space.max_prune_frac,
                "device": ctx.device.type,
            },
            sort_keys=True,
            default=str,
        ).encode()
    )
    for state in (ctx.model.state_dict(), searcher.state_dict()):
        for k, t in state.items():
            h.update(k.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _param_groups(searcher: PassSearcher, train_parts: tuple[str, ...], o: dict) -> list[dict]:
    """Adam's parameter groups: theta and w at ``lr``, V at ``prompt_lr``; only the parts being trained
    (hypernetwork transfer trains the prompt alone)."""
    groups = []
    if "hyper" in train_parts:
        groups.append({"params": list(searcher.hyper.parameters()), "lr": o["lr"]})
    if "encoder" in train_parts:
        groups.append({"params": list(searcher.encoder.parameters()), "lr": o["lr"]})
    if "prompt" in train_parts and searcher.prompt is not None:
        groups.append({"params": list(searcher.prompt.parameters()), "lr": o["prompt_lr"]})
    return groups


def _trainable_params(searcher: PassSearcher, groups: list[dict], train_parts: tuple[str, ...]) -> int:
    """Parameters the search trains; the prompt counts only its border entries (the interior is masked out
    and gets no gradient)."""
    trains_prompt = "prompt" in train_parts and searcher.prompt is not None
    prompt_delta = searcher.prompt.delta if trains_prompt else None
    return sum(p.numel() for g in groups for p in g["params"] if p is not prompt_delta) + (
        searcher.prompt.num_trainable if prompt_delta is not None else 0
    )


def _optimisers(groups: list[dict], o: dict) -> Optimisers:
    """Adam over ``groups`` on the search's schedule: constant, or the closed-form cosine to 0 over ``steps``
    (a function of the step alone, as it always was here; ``passprune.schedule``)."""
    opt = torch.optim.Adam(groups, weight_decay=o["weight_decay"])
    return Optimisers().add(opt, make_scheduler(opt, o["schedule"], o["steps"], closed_form=True))


@dataclass
class _Search:
    """One running PASS search: the frozen model behind its masker, the searcher and its optimiser, the
    data-order generator and the checkpointed progress.

    Why a class: the training step, the validation candidate, the checkpoint and the final selection are
    separate functions (each fits a screen) that share this state.
    """

    ctx: SearchContext
    model: nn.Module
    dense_bn: _DenseBN
    searcher: PassSearcher
    optim: Optimisers
    fingerprint: str
    gen: torch.Generator = field(default_factory=torch.Generator)
    run: _Progress = field(init=False)
    masker: ReaderMasker | None = None
    t0: float = 0.0

    def __post_init__(self) -> None:
        self.gen.manual_seed(self.ctx.seed)
        self.run = _Progress(epoch_gen_state=self.gen.get_state())

    @property
    def o(self) -> dict[str, Any]:
        """The method's options (``ctx.options``: for a transfer, the source's hypernetwork shape)."""
        return self.ctx.options

    @property
    def ckpt_path(self) -> Path:
        return Path(self.ctx.workdir) / CHECKPOINT

    def search_mode(self) -> None:
        """Masks remove a large share of each BN's inputs; with the dense running statistics the masked
        network reads as chance and gives no learning signal. Batch statistics (as VPNs does) fix that;
        momentum 0 keeps the running statistics untouched."""
        self.model.eval()
        if self.o["bn_mode"] == "batch":
            for m in self.dense_bn.bns:
                m.train()
                m.momentum = 0.0

    def stateful(self) -> dict[str, Any]:
        """What a checkpoint restores by ``state_dict``: V, w and theta, the optimiser and its schedule."""
        return {"searcher": self.searcher, **self.optim.stateful()}

    def restore(self) -> int:
        """Continue this very search from its checkpoint, if one exists; returns its step (0: none)."""
        ck = resume.load(
            self.ckpt_path,
            self.fingerprint,
            self.stateful(),
            map_location="cpu",
            tag="pass",
            belongs="another search (options, target, seed, data or weights)",
        )
        if ck is None:
            return 0
        for k, v in ck["progress"].items():
            setattr(self.run, k, v)
        torch.set_rng_state(ck["rng"])
        print(f"[pass] resumed from {self.ckpt_path} at step {self.run.step}", file=sys.stderr)
        return self.run.step

    def save(self) -> None:
        """Write the resumable state (search-loop seconds so far included) at the current step."""
        run = self.run
        run.elapsed += time.time() - self.t0
        self.t0 = time.time()
        progress = {f.name: getattr(run, f.name) for f in fields(run)}
        budget = _budget(self.ctx.target, run.step, self.o)
        resume.save(
            self.ckpt_path,
            self.fingerprint,
            self.stateful(),
            progress=progress,
            rng=torch.get_rng_state(),
            budget=budget,
        )

    def train(self) -> None:
        """Step until ``steps``, epoch after epoch; each epoch's order comes from the generator state saved at
        its start, and a resumed run skips the batches its epoch had already used."""
        o, run, ctx = self.o, self.run, self.ctx
        while run.step < o["steps"]:
            self.gen.set_state(run.epoch_gen_state)
            batches = iter(
                ctx.data.train.batches(
                    ctx.batch_size, shuffle=True, augment=True, generator=self.gen, device=ctx.device, drop_last=True
                )
            )
            for _ in itertools.islice(batches, run.epoch_batches):  # resumed mid-epoch: skip what was used
                pass
            for x, y in batches:
                if run.step >= o["steps"]:
                    break
                self.step(x, y)
            else:  # the epoch ran out: the next one starts from the generator's current state
                if run.epoch_batches == 0:
                    raise ValueError(
                        f"the training split ({len(ctx.data.train)} images) yields no full batch "
                        f"of {ctx.batch_size}; lower search.batch_size"
                    )
                run.epoch_gen_state = self.gen.get_state()
                run.epoch_batches = 0

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One search step: hard masks at this step's budget, CE through the masked prompted network,
        straight-through gradients into V, w and theta; then logging, validation candidates, checkpoint."""
        o, run = self.o, self.run
        masks, _ = self.searcher.straight_through_masks(_budget(self.ctx.target, run.step, o))
        self.masker.set(masks)
        with gpu_autocast(self.ctx.device):  # bf16 on CUDA only (passprune.memory): CPU runs are unchanged
            out = self.model(self.searcher.apply_prompt(x)).float()
        loss = F.cross_entropy(out, y)
        self.optim.zero_grad()
        loss.backward()
        self.optim.step()
        run.step += 1
        run.epoch_batches += 1
        run.images += y.numel()
        if run.step % o["log_every"] == 0 or run.step == o["steps"]:
            rec = {"search_loss": loss.item(), "search_top1": 100.0 * (out.argmax(1) == y).float().mean().item()}
            run.history.append({"step": run.step, **rec})
            self.ctx.log(rec, run.step)
            if o["select_on_val"] and run.step >= o["anneal_frac"] * o["steps"]:
                self.consider()
        if o["checkpoint_every"] and run.step % o["checkpoint_every"] == 0 and run.step < o["steps"]:
            self.save()

    def consider(self) -> None:
        """Evaluate the hypernetwork's current hard structure on the validation split (after the same BN
        re-estimation every pruned net gets) and keep the best state: checkpoint selection on validation
        data, never on test. The dense BN statistics are put back afterwards, so the search (``bn_mode:
        eval``) never continues with a candidate's statistics."""
        ctx, o, best = self.ctx, self.o, self.run.best
        structure = self.searcher.structure(ctx.target)
        if any(c["structure"] == structure for c in best.get("seen", [])):
            return
        self.masker.set(ctx.space.masks_from_structure(structure, ctx.device))
        self.model.eval()
        n = recalibrate_bn(
            self.model, ctx.data.train, ctx.device, o["bn_recalibration_batches"], ctx.batch_size, ctx.seed
        )
        val = _masked_val(self.model, ctx, None)
        self.dense_bn.restore_stats()
        self.run.val_images += min(n * ctx.batch_size, len(ctx.data.train)) + len(ctx.data.val)
        best.setdefault("seen", []).append({"structure": structure, "val": val, "step": self.run.step})
        if val > best["val"]:
            state = {k: v.detach().clone() for k, v in self.searcher.state_dict().items()}
            best.update(val=val, step=self.run.step, structure=structure, state=state)
        self.search_mode()

    def finish(self) -> tuple[Structure, float, float]:
        """The selected structure (best on validation, or the last one) and its masked validation top-1
        without and with the prompt, each after BN re-estimation. Returns (structure, plain, prompted)."""
        ctx, o, best, model = self.ctx, self.o, self.run.best, self.model
        if not o["select_on_val"] or "structure" not in best:
            state = {k: v.detach().clone() for k, v in self.searcher.state_dict().items()}
            best.update(structure=self.searcher.structure(ctx.target), step=self.run.step, state=state)
        self.searcher.load_state_dict(best["state"])
        structure = best["structure"]
        self.masker.set(ctx.space.masks_from_structure(structure, ctx.device))
        model.eval()
        recal = (model, ctx.data.train, ctx.device, o["bn_recalibration_batches"], ctx.batch_size, ctx.seed)
        if "val" in best and best["val"] >= 0:
            val_plain = best["val"]  # measured when it was selected, with the same BN re-estimation
        else:
            recalibrate_bn(*recal)
            val_plain = _masked_val(model, ctx, None)
        recalibrate_bn(*recal, input_transform=self.searcher.apply_prompt)
        return structure, val_plain, _masked_val(model, ctx, self.searcher.apply_prompt)


def _frozen(ctx: SearchContext) -> nn.Module:
    """The dense network on the search's device, in eval mode, with no parameter trained: PASS learns only
    V, w and theta around it."""
    model = ctx.model.eval()  # on ctx.device already: the stage moves it (device contract)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def pass_search(
    ctx: SearchContext,
    variant: PassVariant,
    searcher: PassSearcher | None = None,
    train_parts: tuple[str, ...] = ("prompt", "encoder", "hyper"),
) -> SearchResult:
    """Run (or resume) one PASS search and return its structure with its cost and diagnostics.

    The order below is part of the result: the global seed before the searcher's initialisation, the
    fingerprint over the initial state, then the resume (which restores the RNG), as before the split.
    """
    o = ctx.options
    check_options(o)
    torch.manual_seed(ctx.seed)
    model = _frozen(ctx)
    dense_bn = _DenseBN(model)
    if searcher is None:
        searcher = PassSearcher(ctx.space, ctx.data.in_channels, _image_size(ctx), variant, o)
    searcher = searcher.to(ctx.device)
    groups = _param_groups(searcher, train_parts, o)
    optim = _optimisers(groups, o)
    fp = search_fingerprint(ctx, variant, train_parts, searcher)
    s = _Search(ctx, model, dense_bn, searcher, optim, fp)
    resumed_from = s.restore()
    s.t0 = time.time()
    try:
        s.search_mode()
        with ReaderMasker(ctx.space, model) as masker:
            s.masker = masker
            s.train()
            structure, val_plain, val_prompted = s.finish()
    finally:
        dense_bn.restore()  # the dense model leaves the search as it came in (statistics and BN flags)
    _save_hypernetwork(ctx, searcher, variant)
    run, best = s.run, s.run.best
    info = {
        **cost(search_steps=run.step, search_images=run.images),
        "val_images": run.val_images,
        "search_loop_seconds": run.elapsed + time.time() - s.t0,
        "resumed_from_step": resumed_from,
        "masked_val_top1_prompted": val_prompted,
        "masked_val_top1": val_plain,
        "selected_step": best["step"],
        "history": run.history,
        "val_candidates": [{"step": c["step"], "val_top1": c["val"]} for c in best.get("seen", [])],
        "variant": asdict(variant),
        "effective_options": dict(o),
        "trainable_prompt_params": searcher.prompt.num_trainable if searcher.prompt is not None else 0,
        "trainable_params": _trainable_params(searcher, groups, train_parts),
    }
    return SearchResult(structure, info)


def _save_hypernetwork(ctx: SearchContext, searcher: PassSearcher, variant: PassVariant) -> None:
    """``hypernetwork.pt``: what hypernetwork transfer and the report read back (``load_searcher``)."""
    atomic_torch_save(
        {
            "state_dict": searcher.state_dict(),
            "variant": asdict(variant),
            "options": dict(ctx.options),
            "group_ids": [g.id for g in ctx.space.groups],
        },
        Path(ctx.workdir) / "hypernetwork.pt",
    )


def _budget(target: float, step: int, o: dict) -> float:
    """Curriculum on the budget (our choice): at a low target almost every structure of a frozen network
    reads as chance, which gives the straight-through gradients little to work with; starting near the
    dense network and tightening to the target lets the hypernetwork learn which channels matter first."""
    warm = o["anneal_frac"] * o["steps"]
    if warm <= 0 or step >= warm:
        return target
    return 1.0 - (1.0 - target) * step / warm


def _image_size(ctx: SearchContext) -> int:
    return int(ctx.space.example_inputs.shape[-1])


@torch.no_grad()
def _masked_val(model: nn.Module, ctx: SearchContext, transform) -> float:
    return evaluate(model, ctx.data.val, ctx.device, input_transform=transform)["top1"]


def _register(name: str, family: str, summary: str) -> None:
    variant = PASS_VARIANTS[name]

    @register_method(name, family=family, summary=summary, saves_hypernet=True, **PASS_DEFAULTS)
    def method(ctx: SearchContext) -> SearchResult:
        return pass_search(ctx, variant)

    method.__name__ = name


_register("pass", "pass", "PASS: visual prompt + LSTM hypernetwork over weight statistics, global ranking")
for _name, (_change, _summary) in ABLATIONS.items():
    _register(_name, "pass-ablation", _summary)


def load_searcher(
    path: str | Path, space: PruningSpace, in_channels: int, image_size: int, options: dict
) -> PassSearcher:
    """Rebuild a saved PASS searcher for another model of the same architecture (hypernetwork transfer).

    The options that shape the hypernetwork (``_ARCH_OPTIONS``) are the source's; everything else (steps,
    learning rates, selection) comes from ``options``. Files written before ``bilinear`` was an option had
    the bilinear term whenever they had statistics: that is read off the saved weights."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if ck["group_ids"] != [g.id for g in space.groups]:
        raise ValueError(f"{path} was trained on a different architecture (its groups do not match this model's)")
    variant = PassVariant(**ck["variant"])
    source = {**PASS_DEFAULTS, "bilinear": "hyper.query.weight" in ck["state_dict"], **ck["options"]}
    merged = {**PASS_DEFAULTS, **options, **{k: source[k] for k in _ARCH_OPTIONS}}
    searcher = PassSearcher(space, in_channels, image_size, variant, merged)
    state = {k: v for k, v in ck["state_dict"].items() if not k.startswith("prompt.") and k != "desc"}
    searcher.load_state_dict(state, strict=False)
    return searcher


@register_method(
    "pass_hypertransfer",
    family="pass-transfer",
    summary="PASS hypernetwork transfer: theta and w from a source task, a new prompt learned on the target",
    saves_hypernet=True,
    transfer_only=True,
    source="",
    **{**PASS_DEFAULTS, "steps": 50},
)
def pass_hypertransfer(ctx: SearchContext) -> SearchResult:
    """The target's own weight statistics feed the source's theta and w; only a fresh V is trained."""
    if not ctx.options["source"]:
        raise ValueError("pass_hypertransfer needs option 'source': the path of a PASS hypernetwork.pt")
    searcher = load_searcher(ctx.options["source"], ctx.space, ctx.data.in_channels, _image_size(ctx), ctx.options)
    if searcher.prompt is None:
        raise ValueError("the source hypernetwork has no prompt (pass_noprompt); transfer needs one to adapt")
    ctx = replace(ctx, options=searcher.options)  # the source's hypernetwork shape, the target's search options
    res = pass_search(ctx, searcher.variant, searcher=searcher, train_parts=("prompt",))
    res.info["source"] = str(ctx.options["source"])
    return res
