"""PASS: gradients reach every trained part, masks are hard in the forward pass, the budget is met on every
architecture, ablations remove exactly what they say, and hypernetwork transfer trains only the prompt."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from passprune.methods import SearchContext, get_method
from passprune.methods.passnet.search import PASS_DEFAULTS, PassSearcher, PassVariant
from passprune.models import list_models
from passprune.structure import ChannelMasker, PruningSpace
from conftest import small_model

X0 = torch.zeros(1, 1, 28, 28)


def searcher_for(arch: str, variant: PassVariant = PassVariant()):
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
    parts = {"prompt": searcher.prompt, "encoder": searcher.encoder, "lstm": searcher.hyper.cell,
             "mappers": searcher.hyper.mappers, "stats-embedding": searcher.hyper.phi}
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


def test_search_saves_hypernetwork_and_transfer_trains_only_the_prompt(fmnist_small, tmp_path):
    fast = {"steps": 4, "bn_recalibration_batches": 1}
    src_model = small_model("resnet20")
    spec = get_method("pass")
    space = PruningSpace(src_model, X0)
    ctx = SearchContext(src_model, space, fmnist_small, 0.5, spec.options(fast), torch.device("cpu"), 0, tmp_path / "src",
                        batch_size=16)
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
    ctx_t = SearchContext(tgt_model, space_t, fmnist_small, 0.5, spec_t.options({**fast, "source": str(saved)}),
                          torch.device("cpu"), 0, tmp_path / "tgt", batch_size=16)
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
    torch.save({"state_dict": searcher.state_dict(), "variant": PassVariant().__dict__, "options": dict(PASS_DEFAULTS),
                "group_ids": ["x"]}, tmp_path / "h.pt")
    with pytest.raises(ValueError, match="different architecture"):
        load_searcher(tmp_path / "h.pt", space, 1, 28, {})
