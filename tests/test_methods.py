"""Every method x every registry architecture answers the same question correctly: a valid structure that
meets the MACs target within 1%, and whose masked network equals its physically pruned twin."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import small_model

from passprune.methods import SearchContext, get_method, list_methods
from passprune.models import list_models
from passprune.structure import ChannelMasker, PruningSpace, prune_model

FAST = {  # the smallest settings that still run every code path of each method
    "pass": {"steps": 3, "log_every": 1, "bn_recalibration_batches": 1},
    "pass_noprompt": {"steps": 3, "bn_recalibration_batches": 1},
    "pass_norecur": {"steps": 3, "bn_recalibration_batches": 1},
    "pass_uniform": {"steps": 3, "bn_recalibration_batches": 1},
    "pass_nostats": {"steps": 3, "bn_recalibration_batches": 1},
    "taylor_tp": {"batches": 1},
    "bn_scale_tp": {"epochs": 1, "max_steps_per_epoch": 2},
    "depgraph_tp": {"epochs": 1, "max_steps_per_epoch": 2},
    "greg_tp": {"epochs": 1, "max_steps_per_epoch": 2, "update_every": 1},
    # the published baselines (faithful.py); tests/test_faithful_baselines.py checks what makes them faithful
    "taylor": {"batches": 1},
    "slimming": {"epochs": 1, "max_steps_per_epoch": 2},
    "greg": {"epochs": 1, "max_steps_per_epoch": 2},
    "depgraph": {"epochs": 1, "max_steps_per_epoch": 2, "steps": 20},
}
ONE_SHOT = ("random", "l1", "l1_tp", "l1_uniform_tp", "fpgm", "fpgm_tp")  # no data, no training: zero cost
# transfer and the controls (which need a reference structure: tests/test_controls.py) have their own tests
METHODS = [m for m in list_methods() if m != "pass_hypertransfer" and get_method(m).family != "control"]
COST_KEYS = ("search_steps", "search_images", "weight_train_steps", "weight_train_images")


def test_every_method_has_fast_settings_or_no_options():
    for m in METHODS:
        assert m in FAST or not get_method(m).defaults or m in ONE_SHOT, m


def run(method, model, data, target, tmp_path, seed=0, **extra):
    spec = get_method(method)
    space = PruningSpace(model, torch.zeros(1, 1, 28, 28))
    ctx = SearchContext(
        model=model,
        space=space,
        data=data,
        target=target,
        options=spec.options({**FAST.get(method, {}), **extra}),
        device=torch.device("cpu"),
        seed=seed,
        workdir=tmp_path,
        batch_size=16,
    )
    return space, spec.run(ctx)  # the registry's call path: the device contract is checked first


#: One architecture of each structural family in the registry: the CIFAR ResNet's BasicBlock, torchvision's BasicBlock
#: and Bottleneck, MobileNetV2's inverted residuals (depthwise convs) and VGG's plain stack. Every method runs on each.
FAMILIES = ("resnet20", "resnet18", "resnet50", "mobilenet_v2", "vgg16_bn")
#: The methods that train nothing (one-shot criteria, Taylor's one minibatch of gradients) also run on the other
#: registry architectures: deeper or wider instances of those families (resnet56 and resnet18_cifar are resnet20's
#: CifarResNet, resnet34 is resnet18's ResNet), where sparsity training and PASS would only repeat, at several
#: times the cost, what they do on the family's representative. So every (method, family) pair runs, and every
#: architecture of the registry runs the pruning path (groups, selection, masks, physical pruning).
NO_TRAINING = (*ONE_SHOT, "taylor", "taylor_tp")
SWEEP = [(m, a) for a in list_models() for m in METHODS if a in FAMILIES or m in NO_TRAINING]


def test_sweep_covers_every_method_and_architecture():
    assert set(FAMILIES) <= set(list_models()) and set(NO_TRAINING) <= set(METHODS)
    assert {m for m, _ in SWEEP} == set(METHODS) and {a for _, a in SWEEP} == set(list_models())
    assert all((m, a) in SWEEP for m in METHODS for a in FAMILIES)


@pytest.mark.parametrize("method, arch", SWEEP, ids=[f"{m}-{a}" for m, a in SWEEP])
def test_method_meets_target_with_valid_structure(method, arch, fmnist_tiny, tmp_path):
    model = small_model(arch)
    space, res = run(method, model, fmnist_tiny, 0.5, tmp_path)
    space.validate(res.structure)
    ratio = space.structure_macs_ratio(res.structure)
    assert 0.495 <= ratio <= 0.5 + 1e-12
    assert set(res.structure) == {g.id for g in space.groups}
    x = torch.randn(2, 1, 28, 28)
    model.eval()
    pruned = prune_model(copy.deepcopy(model).cpu(), x[:1], res.structure).eval()
    with torch.no_grad(), ChannelMasker(space, model) as masker:
        masker.set(space.masks_from_structure(res.structure))
        masked = model.float()(x)
        physical = pruned(x)
    scale = max(1.0, physical.abs().max().item())
    assert (masked - physical).abs().max().item() <= 1e-5 * scale
    assert physical.shape == (2, 10)


@pytest.mark.parametrize("method", ["random", "l1", "taylor", "pass", "bn_scale_tp", "slimming", "depgraph"])
def test_same_seed_same_structure(method, fmnist_tiny, tmp_path):
    a = run(method, small_model("resnet20"), fmnist_tiny, 0.4, tmp_path / "a", seed=3)[1].structure
    b = run(method, small_model("resnet20"), fmnist_tiny, 0.4, tmp_path / "b", seed=3)[1].structure
    assert a == b


def test_random_depends_on_seed(fmnist_tiny, tmp_path):
    a = run("random", small_model("resnet20"), fmnist_tiny, 0.4, tmp_path, seed=1)[1].structure
    b = run("random", small_model("resnet20"), fmnist_tiny, 0.4, tmp_path, seed=2)[1].structure
    assert a != b


def test_uniform_baseline_prunes_every_group_alike(fmnist_tiny, tmp_path):
    space, res = run("l1_uniform_tp", small_model("resnet56"), fmnist_tiny, 0.5, tmp_path)
    ratios = [len(res.structure[g.id]) / g.size for g in space.groups]
    assert max(ratios) - min(ratios) <= 2.0 / min(g.size for g in space.groups) + 1e-9


def test_sparsity_methods_change_weights_and_report_cost(fmnist_tiny, tmp_path):
    model = small_model("resnet20")
    before = copy.deepcopy(model.state_dict())
    _, res = run("bn_scale_tp", model, fmnist_tiny, 0.5, tmp_path)
    assert res.weights_changed
    assert res.info["sparsity_epochs"] == 1 and res.info["sparsity_seconds"] > 0
    assert res.info["weight_train_steps"] == res.info["search_steps"] == 2  # max_steps_per_epoch
    assert res.info["weight_train_images"] == res.info["search_images"] == 2 * 16  # batch_size 16
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert any(k.endswith("weight") for k in changed)


@pytest.mark.parametrize("method", [m for m in METHODS if not m.startswith("pass")])
def test_method_reports_its_cost(method, fmnist_tiny, tmp_path):
    """Steps and images of the search, and the training the fine-tuned weights already had (PASS reports
    its own, in passnet)."""
    _, res = run(method, small_model("resnet20"), fmnist_tiny, 0.5, tmp_path)
    assert all(isinstance(res.info.get(k), int) for k in COST_KEYS), res.info
    if method in ONE_SHOT:
        assert all(res.info[k] == 0 for k in COST_KEYS)
    elif method in ("taylor", "taylor_tp"):
        assert res.info["search_steps"] == 1 and res.info["search_images"] == 16
        assert res.info["weight_train_steps"] == res.info["weight_train_images"] == 0
    else:  # sparsity training: its steps are both search cost and training of the weights
        assert res.weights_changed
        assert res.info["weight_train_steps"] == res.info["search_steps"] > 0
        assert res.info["weight_train_images"] == res.info["search_images"] > 0


def test_unknown_method_option_is_rejected():
    with pytest.raises(ValueError, match="has no options"):
        get_method("l1").options({"q": 3})
