"""PASS: gradients reach every trained part, masks are hard in the forward pass, the budget is met on every
architecture, ablations remove exactly what they say, and hypernetwork transfer trains only the prompt."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import small_model

from passprune.methods import SearchContext, get_method
from passprune.methods.passnet.search import PASS_DEFAULTS, PassSearcher, PassVariant
from passprune.models import list_models
from passprune.structure import ChannelMasker, PruningSpace

X0 = torch.zeros(1, 1, 28, 28)


FULL = PassVariant()


def searcher_for(arch: str, variant: PassVariant = FULL):
    model = small_model(arch)
    space = PruningSpace(model, X0)
    return model, space, PassSearcher(space, 1, 28, variant, dict(PASS_DEFAULTS))


def test_gradients_reach_prompt_encoder_and_hypernetwork(fmnist_small):
    model, space, searcher = searcher_for("resnet20")
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = next(fmnist_small.train.batches(32, shuffle=True, augment=False, generator=torch.Generator().manual_seed(0)))
    with ChannelMasker(space, model) as masker:
        masks, structure = searcher.straight_through_masks(0.5)
        for gid, m in masks.items():  # forward values are hard 0/1 masks that match the structure
            assert set(m.detach().unique().tolist()) <= {0.0, 1.0}
            assert int(m.detach().sum()) == len(structure[gid])
        masker.set(masks)
        F.cross_entropy(model(searcher.apply_prompt(x)), y).backward()
    parts = {
        "prompt": searcher.prompt,
        "encoder": searcher.encoder,
        "lstm": searcher.hyper.cell,
        "mappers": searcher.hyper.mappers,
        "stats-embedding": searcher.hyper.phi,
    }
    for name, part in parts.items():
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum().item() for g in grads) > 0, name
    assert all(p.grad is None for p in model.parameters())  # the CNN is frozen


@pytest.mark.parametrize("arch", list_models())
@pytest.mark.parametrize("target", [0.7, 0.3])
def test_budget_met_on_every_architecture(arch, target):
    _, space, searcher = searcher_for(arch)
    ratio = space.structure_macs_ratio(searcher.structure(target))
    assert target * 0.99 <= ratio <= target + 1e-12


def test_ablations_remove_what_they_say():
    _, _, full = searcher_for("resnet20")
    assert full.prompt is not None and full.prompt.num_trainable > 0
    assert isinstance(full.hyper.cell, nn.LSTMCell)

    _, _, noprompt = searcher_for("resnet20", PassVariant(prompt=False))
    assert noprompt.prompt is None
    assert not any("prompt" in n for n, _ in noprompt.named_parameters())
    assert type(noprompt.encoder).__name__ == "ConstantState"

    _, _, norecur = searcher_for("resnet20", PassVariant(recurrent=False))
    assert not any(isinstance(m, (nn.LSTMCell, nn.LSTM)) for m in norecur.modules())

    _, _, nostats = searcher_for("resnet20", PassVariant(stats=False))
    assert not hasattr(nostats.hyper, "phi")
    # scores cannot depend on the weight statistics: perturbing them changes nothing
    before = {k: v.clone() for k, v in nostats.probabilities().items()}
    nostats.stats = [s + torch.randn_like(s) for s in nostats.stats]
    after = nostats.probabilities()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # ...while the full model's scores do depend on them
    b = {k: v.clone() for k, v in full.probabilities().items()}
    full.stats = [s + torch.randn_like(s) for s in full.stats]
    assert any(not torch.equal(b[k], v) for k, v in full.probabilities().items())

    _, space, uniform = searcher_for("resnet56", PassVariant(strategy="uniform"))
    st = uniform.structure(0.5)
    ratios = [len(st[g.id]) / g.size for g in space.groups]
    assert max(ratios) - min(ratios) <= 2.0 / min(g.size for g in space.groups) + 1e-9


def test_search_saves_hypernetwork_and_transfer_trains_only_the_prompt(fmnist_tiny, tmp_path):
    fast = {"steps": 4, "bn_recalibration_batches": 1}
    src_model = small_model("resnet20")
    spec = get_method("pass")
    space = PruningSpace(src_model, X0)
    ctx = SearchContext(
        src_model, space, fmnist_tiny, 0.5, spec.options(fast), torch.device("cpu"), 0, tmp_path / "src", batch_size=16
    )
    (tmp_path / "src").mkdir()
    res = spec.fn(ctx)
    saved = tmp_path / "src" / "hypernetwork.pt"
    assert saved.exists() and res.info["trainable_prompt_params"] > 0

    tgt_model = small_model("resnet20")
    with torch.no_grad():
        for p in tgt_model.parameters():
            p.mul_(1.5)  # a different network of the same architecture
    spec_t = get_method("pass_hypertransfer")
    space_t = PruningSpace(tgt_model, X0)
    (tmp_path / "tgt").mkdir()
    ctx_t = SearchContext(
        tgt_model,
        space_t,
        fmnist_tiny,
        0.5,
        spec_t.options({**fast, "source": str(saved)}),
        torch.device("cpu"),
        0,
        tmp_path / "tgt",
        batch_size=16,
    )
    res_t = spec_t.fn(ctx_t)
    assert res_t.info["trainable_params"] == res_t.info["trainable_prompt_params"]  # only V trains
    src_state = torch.load(saved, weights_only=False)["state_dict"]
    tgt_state = torch.load(tmp_path / "tgt" / "hypernetwork.pt", weights_only=False)["state_dict"]
    for k, v in src_state.items():
        if k.startswith("hyper.") or k.startswith("encoder."):
            assert torch.equal(v, tgt_state[k]), k  # theta and w transferred unchanged
    assert not torch.equal(src_state["prompt.delta"], tgt_state["prompt.delta"])
    ratio = space_t.structure_macs_ratio(res_t.structure)
    assert 0.495 <= ratio <= 0.5 + 1e-12


def test_transfer_rejects_another_architecture(fmnist_small, tmp_path):
    from passprune.methods.passnet.search import load_searcher

    model, space, searcher = searcher_for("resnet20")
    torch.save(
        {
            "state_dict": searcher.state_dict(),
            "variant": PassVariant().__dict__,
            "options": dict(PASS_DEFAULTS),
            "group_ids": ["x"],
        },
        tmp_path / "h.pt",
    )
    with pytest.raises(ValueError, match="different architecture"):
        load_searcher(tmp_path / "h.pt", space, 1, 28, {})


# ----------------------------------------------------------------------------- options and ablations (issue 9)
def test_ablations_differ_from_full_pass_in_exactly_one_switch():
    """Each ablation is full PASS with one field changed: its effective configuration (variant + options)
    differs from full PASS's in exactly one key, the one the ablation names."""
    from passprune.methods.passnet.search import ABLATIONS, effective_config

    full = effective_config("pass")
    assert full["select_on_val"] is False and full["bilinear"] is False and full["rank_on"] == "score"
    for name, (change, _) in ABLATIONS.items():
        cfg = effective_config(name)
        assert set(cfg) == set(full), name
        diff = {k for k in full if cfg[k] != full[k]}
        assert diff == {f"variant.{k}" for k in change} and len(diff) == 1, (name, diff)


def test_bilinear_term_is_off_by_default_and_switchable():
    _, _, default = searcher_for("resnet20")
    assert not hasattr(default.hyper, "query")  # the paper's linear mapper only
    model = small_model("resnet20")
    space = PruningSpace(model, X0)
    bil = PassSearcher(space, 1, 28, PassVariant(), {**PASS_DEFAULTS, "bilinear": True})
    assert isinstance(bil.hyper.query, nn.Linear)
    # with the bilinear term a channel's score follows its own statistics: permuting the channels'
    # statistics permutes the scores' statistics-dependent part, which the linear mapper alone cannot do
    g0 = space.groups[0].id
    with torch.no_grad():
        before = bil.logits()[g0].clone()
        bil.stats[0] = bil.stats[0].flip(0)
        after = bil.logits()[g0]
    assert not torch.allclose(before, after)
    with pytest.raises(ValueError, match="bilinear"):
        PassSearcher(space, 1, 28, PassVariant(stats=False), {**PASS_DEFAULTS, "bilinear": True})


def test_autoregressive_step_sees_the_previous_groups_decision():
    """With ``autoregressive`` the scores of group i+1 depend on group i's mapper (through its soft keep
    ratio); without it they cannot (the mapper only reads the LSTM state)."""
    model = small_model("resnet20")
    space = PruningSpace(model, X0)
    for auto in (False, True):
        s = PassSearcher(space, 1, 28, PassVariant(), {**PASS_DEFAULTS, "autoregressive": auto})
        s.logits()[space.groups[1].id].sum().backward()
        grad = s.hyper.mappers[0].bias.grad
        assert (grad is not None and grad.abs().sum() > 0) == auto
        assert s.hyper.cell.input_size == PASS_DEFAULTS["embed"] + int(auto)
    with pytest.raises(ValueError, match="autoregressive"):
        PassSearcher(space, 1, 28, PassVariant(recurrent=False), {**PASS_DEFAULTS, "autoregressive": True})


def test_rank_on_score_does_not_depend_on_ties_at_saturation():
    """Scores far above sigmoid's float32 saturation (p == 1.0 exactly) that grow with the channel index:
    ranking on the scores keeps the highest-index channels; ranking on p falls back to the index order."""
    model = small_model("resnet20")
    space = PruningSpace(model, X0)
    structures = {}
    for rank_on in ("score", "prob"):
        s = PassSearcher(space, 1, 28, PassVariant(), {**PASS_DEFAULTS, "rank_on": rank_on})
        with torch.no_grad():
            for m, g in zip(s.hyper.mappers, space.groups):
                m.weight.zero_()
                m.bias.copy_(40.0 + 0.01 * torch.arange(g.size))
        assert all(bool((p == 1.0).all()) for p in s.probabilities().values())
        structures[rank_on] = s.structure(0.5)
    for g in space.groups:
        kept = structures["score"][g.id]
        assert kept == list(range(g.size - len(kept), g.size)), g.id  # the top scores, not the first indices
    assert structures["prob"] != structures["score"]
    masks, st = s.straight_through_masks(0.5)  # the straight-through gradient still flows through p
    sum(m.sum() for m in masks.values()).backward()
    assert s.hyper.mappers[0].weight.grad is not None


@pytest.mark.parametrize("strategy", ["global", "uniform"])
def test_min_channels_and_protect_first(strategy):
    model = small_model("resnet20")
    space = PruningSpace(model, X0)
    opts = {**PASS_DEFAULTS, "min_channels": 6, "protect_first": True}
    s = PassSearcher(space, 1, 28, PassVariant(strategy=strategy), opts)
    st = s.structure(0.3)
    first = space.groups[0]
    assert st[first.id] == list(range(first.size))
    assert all(len(st[g.id]) >= 6 for g in space.groups)
    assert 0.3 * 0.99 <= space.structure_macs_ratio(st) <= 0.3 + 1e-12
    plain = searcher_for("resnet20", PassVariant(strategy=strategy))[2].structure(0.3)
    assert len(plain[first.id]) < first.size  # without protection the first group is pruned at this target


# ----------------------------------------------------------------------------- masks where channels are read
@pytest.mark.parametrize("arch", list_models())
def test_reader_masks_equal_physical_pruning(arch):
    """PASS's search masks the inputs of the layers that read a group; the forward pass must still equal
    the physically pruned network (float64, as in test_structure)."""
    import copy

    from passprune.methods.passnet.masking import ReaderMasker
    from passprune.structure import prune_model

    model = small_model(arch).double()
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)).double()
    space = PruningSpace(model, x[:1])
    g = torch.Generator().manual_seed(1)
    structure = space.select_global({grp.id: torch.rand(grp.size, generator=g) for grp in space.groups}, 0.4)
    pruned = prune_model(copy.deepcopy(model), x[:1], structure).eval()
    with torch.no_grad(), ReaderMasker(space, model) as masker:
        masker.set(space.masks_from_structure(structure, dtype=torch.float64))
        masked = model(x)
    with torch.no_grad():
        physical = pruned(x)
    assert (masked - physical).abs().max().item() < 1e-5


def test_pruned_channels_get_straight_through_gradients(fmnist_small):
    """Why the search masks at the readers: masked at the writers' norm outputs, a pruned channel is 0 before
    a ReLU (ReLU'(0) = 0), so its straight-through gradient is exactly 0 and it can never come back."""
    from passprune.methods.passnet.masking import ReaderMasker

    x, y = next(fmnist_small.train.batches(32, shuffle=True, augment=False, generator=torch.Generator().manual_seed(0)))
    grads = {}
    for masker_cls in (ChannelMasker, ReaderMasker):
        model, space, searcher = searcher_for("resnet20")
        for p in model.parameters():
            p.requires_grad_(False)
        with masker_cls(space, model) as masker:
            masks, structure = searcher.straight_through_masks(0.5)
            for m in masks.values():
                m.retain_grad()
            masker.set(masks)
            F.cross_entropy(model(x), y).backward()
        pruned = torch.cat([masks[g.id].grad[masks[g.id].detach() == 0] for g in space.groups])
        grads[masker_cls.__name__] = pruned.abs()
    assert grads["ChannelMasker"].max() == 0.0
    assert (grads["ReaderMasker"] > 0).float().mean() > 0.9


# ----------------------------------------------------------------------------- bn_mode: eval
def test_bn_mode_eval_searches_with_the_dense_statistics(fmnist_tiny, tmp_path):
    """Validation candidates re-estimate BN statistics in place; the search must keep normalising with the
    dense model's statistics and hand the model back with them."""
    model = small_model("resnet20")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    dense = [(m.running_mean.clone(), m.running_var.clone()) for m in bns]
    seen = {"search": [], "other": []}

    def hook(m, _inp):
        i = bns.index(m)
        same = torch.equal(m.running_mean, dense[i][0]) and torch.equal(m.running_var, dense[i][1])
        seen["search" if torch.is_grad_enabled() else "other"].append((same, m.training))

    handles = [m.register_forward_pre_hook(hook) for m in bns]
    spec = get_method("pass")
    opts = spec.options(
        {
            "steps": 6,
            "log_every": 1,
            "anneal_frac": 0.0,
            "select_on_val": True,
            "bn_mode": "eval",
            "bn_recalibration_batches": 1,
            "checkpoint_every": 0,
        }
    )
    res = spec.fn(
        SearchContext(
            model, PruningSpace(model, X0), fmnist_tiny, 0.5, opts, torch.device("cpu"), 0, tmp_path, batch_size=16
        )
    )
    for h in handles:
        h.remove()
    assert len(res.info["val_candidates"]) >= 2  # candidates re-estimated BN between search steps
    assert not all(same for same, _ in seen["other"])  # ...and they did change the statistics meanwhile
    assert seen["search"] and all(same and not training for same, training in seen["search"])
    for m, (mean, var) in zip(bns, dense):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var) and not m.training


# ----------------------------------------------------------------------------- checkpoint and resume
def _resumable_run(data, workdir, *, seed=0, target=0.5, interrupt_at=None, extra=None):
    class Interrupted(Exception):
        pass

    def log(_metrics, step):
        if interrupt_at is not None and step == interrupt_at:
            raise Interrupted

    model = small_model("resnet20")
    spec = get_method("pass")
    opts = spec.options(
        {
            "steps": 6,
            "log_every": 2,
            "checkpoint_every": 3,
            "select_on_val": True,
            "bn_recalibration_batches": 1,
            **(extra or {}),
        }
    )
    # batch 32: 4 batches per epoch of the 128 training images, so the resumed run skips the 3 batches the
    # checkpoint had used, finishes that epoch and crosses into the next
    ctx = SearchContext(
        model, PruningSpace(model, X0), data, target, opts, torch.device("cpu"), seed, workdir, batch_size=32, log=log
    )
    try:
        return spec.fn(ctx)
    except Interrupted:
        return None


@pytest.mark.parametrize("extra", [None, {"schedule": "cosine", "weight_decay": 1e-4}], ids=["default", "cosine-wd"])
def test_search_resumes_from_its_checkpoint_exactly(fmnist_tiny, tmp_path, extra):
    from passprune.methods.passnet.search import CHECKPOINT

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    # a checkpoint of another search (other target) in the same folder is ignored: a full run from step 0
    assert _resumable_run(fmnist_tiny, a, target=0.6, interrupt_at=4, extra=extra) is None
    assert torch.load(a / CHECKPOINT, weights_only=False)["progress"]["step"] == 3
    ref = _resumable_run(fmnist_tiny, a, extra=extra)
    assert ref.info["resumed_from_step"] == 0
    # interrupted at step 4 (checkpoint at step 3), then rerun: resumes at 3, ends exactly as a full run
    assert _resumable_run(fmnist_tiny, b, interrupt_at=4, extra=extra) is None
    ck = torch.load(b / CHECKPOINT, weights_only=False)
    assert ck["progress"]["step"] == 3 and ck["progress"]["epoch_batches"] == 3 and "optimizer" in ck
    if extra:  # the cosine schedule had lowered the rates by the checkpoint's step
        assert all(g["lr"] < g["initial_lr"] for g in ck["optimizer"]["param_groups"])
    res = _resumable_run(fmnist_tiny, b, extra=extra)
    assert res.info["resumed_from_step"] == 3
    assert res.structure == ref.structure
    for key in (
        "history",
        "val_candidates",
        "selected_step",
        "search_steps",
        "search_images",
        "val_images",
        "masked_val_top1",
        "masked_val_top1_prompted",
    ):
        assert res.info[key] == ref.info[key], key
    s_ref = torch.load(a / "hypernetwork.pt", weights_only=False)["state_dict"]
    s_res = torch.load(b / "hypernetwork.pt", weights_only=False)["state_dict"]
    assert s_ref.keys() == s_res.keys() and all(torch.equal(s_ref[k], s_res[k]) for k in s_ref)
    # the cost of the search is recorded with the options it ran with
    assert ref.info["search_steps"] == 6 and ref.info["search_images"] == 6 * 32
    assert ref.info["val_images"] > 0 and ref.info["effective_options"]["checkpoint_every"] == 3
    assert ref.info["variant"] == {"prompt": True, "recurrent": True, "stats": True, "strategy": "global"}


# ----------------------------------------------------------------------------- prompt_at_eval (fine-tuning)
def test_prompt_at_eval_finetunes_and_tests_with_the_prompt(tmp_path):
    """Through the CLI: with prompt_at_eval the pruned net is fine-tuned with the prompt trained jointly (the
    saved V differs from the search's) and the headline top1 is the prompted one; without it (a baseline)
    the no-prompt numbers equal the headline ones."""
    import json

    from passprune.checkpoint import load_pruned
    from passprune.cli import main
    from passprune.data import load_dataset
    from passprune.engine import evaluate

    common = {
        "data": {"root": str(tmp_path / "data"), "val_size": 64, "train_subset": 256, "test_subset": 64},
        "device": "cpu",
        "threads": 1,
        "tracking": {"enabled": False},
    }
    tiny = {
        "epochs": 1,
        "batch_size": 32,
        "lr": 1e-8,
        "schedule": "constant",
        "augment": False,
        "max_steps_per_epoch": 2,
        "eval_batch_size": 256,
    }
    job = ["--dataset", "fashion_mnist", "--arch", "resnet20", "--seed", "0"]
    dense = tmp_path / "dense" / "model.pt"
    main(
        [
            "pretrain",
            *job,
            "--out",
            str(dense.parent),
            "--settings",
            json.dumps({**common, "model": {"width": 0.25}, "train": tiny}),
        ]
    )
    ft = json.dumps({**common, "finetune": {**tiny, "bn_recalibration_batches": 1}, "latency": {"enabled": False}})
    metrics = {}
    for method, options in (("pass", {"steps": 3, "bn_recalibration_batches": 1, "prompt_at_eval": True}), ("l1", {})):
        out = tmp_path / method
        main(
            [
                "search",
                *job,
                "--method",
                method,
                "--target",
                "0.5",
                "--dense",
                str(dense),
                "--out",
                str(out / "search"),
                "--settings",
                json.dumps({**common, "search": {"batch_size": 32}, "method_options": options}),
            ]
        )
        main(
            [
                "finetune",
                *job,
                "--target",
                "0.5",
                "--dense",
                str(dense),
                "--search",
                str(out / "search"),
                "--out",
                str(out),
                "--settings",
                ft,
            ]
        )
        metrics[method] = json.loads((out / "metrics.json").read_text())
    assert not (tmp_path / "pass" / "search" / "search_ckpt.pt").exists()  # the finished search drops it
    m = metrics["pass"]
    assert m["prompt_at_eval"] is True and m["finetune_prompt_lr"] == PASS_DEFAULTS["prompt_lr"]
    searched = torch.load(tmp_path / "pass" / "search" / "hypernetwork.pt", weights_only=False)["state_dict"]
    tuned = torch.load(tmp_path / "pass" / "prompt.pt", weights_only=False)
    assert not torch.equal(searched["prompt.delta"], tuned["delta"])  # V was trained with the weights
    assert torch.equal(searched["prompt.mask"], tuned["mask"])
    # the recorded numbers are the saved network's, with and without V on its inputs
    d = common["data"]
    data = load_dataset(
        "fashion_mnist",
        d["root"],
        seed=0,
        val_size=d["val_size"],
        train_subset=d["train_subset"],
        test_subset=d["test_subset"],
    )
    net, _ = load_pruned(tmp_path / "pass" / "model.pt")
    cpu = torch.device("cpu")
    prompted = evaluate(net, data.test, cpu, input_transform=lambda x: x + (tuned["delta"] * tuned["mask"])[None])
    assert prompted["top1"] == pytest.approx(m["top1"], abs=100 / 64 + 1e-9)
    assert evaluate(net, data.test, cpu)["top1"] == pytest.approx(m["top1_noprompt"], abs=100 / 64 + 1e-9)
    assert "top1_before_ft_noprompt" in m
    b = metrics["l1"]
    assert b["prompt_at_eval"] is False and not (tmp_path / "l1" / "prompt.pt").exists()
    assert b["top1_noprompt"] == b["top1"] and b["top1_before_ft_noprompt"] == b["top1_before_ft"]
