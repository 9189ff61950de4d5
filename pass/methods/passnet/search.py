"""PASS search: jointly train the prompt V, the encoder g_w and the hypernetwork theta on the frozen dense
network, with hard masks in the forward pass and straight-through gradients, under a global MACs budget.

Each step: (h0, c0) = g_w(V); scores = theta(stats, h0, c0); p = sigmoid(scores / T); a global threshold
on p is found by bisection so that the masked network's MACs (counting the next layer's input shrinkage)
are <= target; hard masks forward, dL/dp = dL/dmask backward; loss = CE(f(x + V; masks), y). The CNN is
frozen with BatchNorm in eval mode, which makes the masked network equal its physically pruned twin.
After search, deterministic masks from the trained hypernetwork become the structure.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...engine import evaluate, recalibrate_bn
from ...io import atomic_torch_save
from ...structure import ChannelMasker, PruningSpace, Structure
from .. import SearchContext, SearchResult, register_method
from .encoder import ConstantState, PromptEncoder
from .hypernetwork import RecurrentHyperNetwork
from .prompt import PadPrompt, pad_width
from .stats import CHANNEL_STATS, channel_statistics, group_descriptors

PASS_DEFAULTS = dict(
    steps=200,  # optimisation steps of the search
    lr=3e-3,  # Adam, for theta and w
    prompt_lr=3e-2,  # Adam, for V
    hidden=64,  # LSTM hidden size
    embed=64,  # statistics embedding size
    temperature=1.0,  # p = sigmoid(score / T)
    prompt_width=None,  # pad width in px; None = 16 px scaled from 224 px to the input size
    anneal_frac=0.5,  # the MACs budget tightens linearly from 1.0 to the target over this fraction of steps
    bn_mode="batch",  # batch: BN normalises with batch statistics during search (frozen affine); eval: running stats
    bn_recalibration_batches=20,  # before every masked validation (same as fine-tuning's before-FT number)
    select_on_val=True,  # after the budget anneal, keep the hypernetwork state whose structure is best on val
    log_every=25,
)


@dataclass
class PassVariant:
    prompt: bool = True
    recurrent: bool = True
    stats: bool = True
    strategy: str = "global"  # global | uniform


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

    def __init__(self, space: PruningSpace, in_channels: int, image_size: int, variant: PassVariant,
                 options: dict) -> None:
        super().__init__()
        self.space, self.variant, self.options = space, variant, options
        self.prompt = (PadPrompt(in_channels, image_size, options["prompt_width"] or pad_width(image_size))
                       if variant.prompt else None)
        self.encoder = (PromptEncoder(in_channels, options["hidden"]) if variant.prompt
                        else ConstantState(options["hidden"]))
        self.hyper = RecurrentHyperNetwork([g.size for g in space.groups], len(CHANNEL_STATS), 3,
                                           hidden=options["hidden"], embed=options["embed"],
                                           recurrent=variant.recurrent, use_stats=variant.stats)
        self.register_buffer("desc", group_descriptors(space))
        self.stats: list[torch.Tensor] = channel_statistics(space)

    def to(self, *args, **kwargs):  # stats is a plain list of tensors
        out = super().to(*args, **kwargs)
        self.stats = [s.to(*args, **kwargs) for s in self.stats]
        return out

    def probabilities(self) -> dict[str, torch.Tensor]:
        state = self.encoder(self.prompt.masked() if self.prompt is not None else None)
        scores = self.hyper(self.stats, self.desc, state)
        T = self.options["temperature"]
        return {g.id: torch.sigmoid(s / T) for g, s in zip(self.space.groups, scores)}

    def select(self, probs: dict[str, torch.Tensor], target: float) -> Structure:
        if self.variant.strategy == "uniform":
            return self.space.select_uniform(probs, target)
        return self.space.select_global(probs, target)

    def straight_through_masks(self, target: float) -> tuple[dict[str, torch.Tensor], Structure]:
        probs = self.probabilities()
        structure = self.select(probs, target)
        masks = {}
        for gid, p in probs.items():
            hard = torch.zeros_like(p)
            hard[torch.as_tensor(structure[gid], device=p.device)] = 1.0
            masks[gid] = _StraightThrough.apply(p, hard)
        return masks, structure

    @torch.no_grad()
    def structure(self, target: float) -> Structure:
        return self.select(self.probabilities(), target)

    def apply_prompt(self, x: torch.Tensor) -> torch.Tensor:
        return self.prompt(x) if self.prompt is not None else x


def pass_search(ctx: SearchContext, variant: PassVariant, searcher: PassSearcher | None = None,
                train_parts: tuple[str, ...] = ("prompt", "encoder", "hyper")) -> SearchResult:
    o = ctx.options
    torch.manual_seed(ctx.seed)
    model = ctx.model.to(ctx.device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if o["bn_mode"] not in ("batch", "eval"):
        raise ValueError(f"bn_mode must be 'batch' or 'eval', got {o['bn_mode']!r}")

    def search_mode() -> None:
        # Masks remove a large share of each BN's inputs; with the dense running statistics the masked
        # network reads as chance and gives no learning signal. Batch statistics (as VPNs does) fix that;
        # momentum 0 keeps the running statistics untouched.
        model.eval()
        if o["bn_mode"] == "batch":
            for m in bns:
                m.train()
                m.momentum = 0.0

    search_mode()
    if searcher is None:
        searcher = PassSearcher(ctx.space, ctx.data.in_channels, _image_size(ctx), variant, o)
    searcher = searcher.to(ctx.device)
    groups = []
    if "hyper" in train_parts:
        groups.append({"params": list(searcher.hyper.parameters()), "lr": o["lr"]})
    if "encoder" in train_parts:
        groups.append({"params": list(searcher.encoder.parameters()), "lr": o["lr"]})
    if "prompt" in train_parts and searcher.prompt is not None:
        groups.append({"params": list(searcher.prompt.parameters()), "lr": o["prompt_lr"]})
    opt = torch.optim.Adam(groups)
    prompt_delta = searcher.prompt.delta if ("prompt" in train_parts and searcher.prompt is not None) else None
    gen = torch.Generator().manual_seed(ctx.seed)
    t0, step, history = time.time(), 0, []
    best: dict = {"val": -1.0}
    warm = o["anneal_frac"] * o["steps"]
    with ChannelMasker(ctx.space, model) as masker:

        def consider() -> None:
            """Evaluate the hypernetwork's current hard structure on the validation split (after the same BN
            re-estimation every pruned net gets) and keep the best state: checkpoint selection on
            validation data, never on test."""
            structure = searcher.structure(ctx.target)
            if any(c["structure"] == structure for c in best.get("seen", [])):
                return
            masker.set(ctx.space.masks_from_structure(structure, ctx.device))
            model.eval()
            recalibrate_bn(model, ctx.data.train, ctx.device, o["bn_recalibration_batches"], ctx.batch_size,
                           ctx.seed)
            val = _masked_val(model, ctx, None)
            best.setdefault("seen", []).append({"structure": structure, "val": val, "step": step})
            if val > best["val"]:
                best.update(val=val, step=step, structure=structure,
                            state={k: v.detach().clone() for k, v in searcher.state_dict().items()})
            search_mode()

        while step < o["steps"]:
            for x, y in ctx.data.train.batches(ctx.batch_size, shuffle=True, augment=True, generator=gen,
                                               device=ctx.device, drop_last=True):
                if step >= o["steps"]:
                    break
                masks, _ = searcher.straight_through_masks(_budget(ctx.target, step, o))
                masker.set(masks)
                out = model(searcher.apply_prompt(x))
                loss = F.cross_entropy(out, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step % o["log_every"] == 0 or step == o["steps"]:
                    rec = {"search_loss": loss.item(), "search_top1": 100.0 * (out.argmax(1) == y).float().mean().item()}
                    history.append({"step": step, **rec})
                    ctx.log(rec, step)
                    if o["select_on_val"] and step >= warm:
                        consider()
        if not o["select_on_val"] or "structure" not in best:
            best.update(structure=searcher.structure(ctx.target), step=step,
                        state={k: v.detach().clone() for k, v in searcher.state_dict().items()})
        searcher.load_state_dict(best["state"])
        structure = best["structure"]
        masker.set(ctx.space.masks_from_structure(structure, ctx.device))
        model.eval()
        if "val" in best and best["val"] >= 0:
            val_plain = best["val"]  # measured when it was selected, with the same BN re-estimation
        else:
            recalibrate_bn(model, ctx.data.train, ctx.device, o["bn_recalibration_batches"], ctx.batch_size, ctx.seed)
            val_plain = _masked_val(model, ctx, None)
        recalibrate_bn(model, ctx.data.train, ctx.device, o["bn_recalibration_batches"], ctx.batch_size, ctx.seed,
                       input_transform=searcher.apply_prompt)
        val_prompted = _masked_val(model, ctx, searcher.apply_prompt)
    atomic_torch_save({"state_dict": searcher.state_dict(), "variant": variant.__dict__, "options": o,
                       "group_ids": [g.id for g in ctx.space.groups]}, Path(ctx.workdir) / "hypernetwork.pt")
    info = {"search_steps": step, "search_loop_seconds": time.time() - t0, "masked_val_top1_prompted": val_prompted,
            "masked_val_top1": val_plain, "selected_step": best["step"], "history": history,
            "val_candidates": [{"step": c["step"], "val_top1": c["val"]} for c in best.get("seen", [])],
            "trainable_prompt_params": searcher.prompt.num_trainable if searcher.prompt is not None else 0,
            # the prompt counts only its border entries (the interior is masked out and gets no gradient)
            "trainable_params": sum(p.numel() for g in groups for p in g["params"] if p is not prompt_delta)
            + (searcher.prompt.num_trainable if prompt_delta is not None else 0)}
    return SearchResult(structure, info)


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


def _register(name: str, variant: PassVariant, family: str, summary: str) -> None:
    @register_method(name, family=family, summary=summary, **PASS_DEFAULTS)
    def method(ctx: SearchContext) -> SearchResult:
        return pass_search(ctx, variant)

    method.__name__ = name


_register("pass", PassVariant(), "pass", "PASS: visual prompt + LSTM hypernetwork over weight statistics, global ranking")
_register("pass_noprompt", PassVariant(prompt=False), "pass-ablation",
          "PASS without the visual prompt: no V, the LSTM's initial state is a learned vector")
_register("pass_norecur", PassVariant(recurrent=False), "pass-ablation",
          "PASS without recurrence: a per-step MLP, no state carried between groups")
_register("pass_uniform", PassVariant(strategy="uniform"), "pass-ablation",
          "PASS scores, but every group pruned by the same ratio (no global ranking)")
_register("pass_nostats", PassVariant(stats=False), "pass-ablation",
          "PASS with learned per-group embeddings instead of weight statistics")


def load_searcher(path: str | Path, space: PruningSpace, in_channels: int, image_size: int, options: dict) -> PassSearcher:
    """Rebuild a saved PASS searcher for another model of the same architecture (hypernetwork transfer)."""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    if ck["group_ids"] != [g.id for g in space.groups]:
        raise ValueError(f"{path} was trained on a different architecture (its groups do not match this model's)")
    variant = PassVariant(**ck["variant"])
    searcher = PassSearcher(space, in_channels, image_size, variant, {**ck["options"], **options})
    state = {k: v for k, v in ck["state_dict"].items() if not k.startswith("prompt.") and k != "desc"}
    searcher.load_state_dict(state, strict=False)
    return searcher


@register_method("pass_hypertransfer", family="pass-transfer",
                 summary="PASS hypernetwork transfer: theta and w from a source task, a new prompt learned on the target",
                 source="", **{**PASS_DEFAULTS, "steps": 50})
def pass_hypertransfer(ctx: SearchContext) -> SearchResult:
    """The target's own weight statistics feed the source's theta and w; only a fresh V is trained."""
    if not ctx.options["source"]:
        raise ValueError("pass_hypertransfer needs option 'source': the path of a PASS hypernetwork.pt")
    searcher = load_searcher(ctx.options["source"], ctx.space, ctx.data.in_channels, _image_size(ctx), ctx.options)
    if searcher.prompt is None:
        raise ValueError("the source hypernetwork has no prompt (pass_noprompt); transfer needs one to adapt")
    res = pass_search(ctx, searcher.variant, searcher=searcher, train_parts=("prompt",))
    res.info["source"] = str(ctx.options["source"])
    return res
