"""Model registry tests, parametrized over ``list_models()`` so a newly registered model is
covered automatically. Inputs are tiny (batch 2, 28-32 px) to keep the file fast on CPU."""

from __future__ import annotations

import os
from urllib.error import URLError

import pytest
import torch
import torch_pruning as tp
import torchvision
from torch import nn

from passprune.models import IMAGENET_WEIGHTS, build_model, get_classifier, list_models
from passprune.models.imagenet import adapt_stem_weight, weights_cache_path

NAMES = list_models()
PRETRAINED = sorted(IMAGENET_WEIGHTS)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_expected_models_are_registered() -> None:
    expected = {
        "resnet20",
        "resnet56",
        "resnet18_cifar",
        "resnet18",
        "resnet34",
        "resnet50",
        "vgg16_bn",
        "mobilenet_v2",
    }
    assert expected <= set(NAMES)
    assert list_models("resnet*") == sorted(n for n in NAMES if n.startswith("resnet"))


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="resnet20"):
        build_model("no_such_net", 10)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32)])
def test_forward_shape(name: str, in_channels: int, size: int) -> None:
    model = build_model(name, num_classes=10, in_channels=in_channels)
    out = model(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_backward_reaches_every_parameter(name: str) -> None:
    model = build_model(name, num_classes=10, in_channels=1, width=0.5)
    model(torch.randn(2, 1, 28, 28)).logsumexp(1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without grad: {no_grad}"


@pytest.mark.parametrize("name", NAMES)
def test_width_shrinks_model(name: str) -> None:
    full = build_model(name, num_classes=10, in_channels=1, width=1.0)
    half = build_model(name, num_classes=10, in_channels=1, width=0.5)
    assert n_params(half) < n_params(full)


@pytest.mark.parametrize("name", NAMES)
def test_classifier_is_last_and_only_linear(name: str) -> None:
    model = build_model(name, num_classes=7, in_channels=1)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears == [get_classifier(model)]
    assert linears[-1].out_features == 7


@pytest.mark.parametrize("name", NAMES)
def test_every_conv_is_followed_by_batchnorm(name: str) -> None:
    modules = list(build_model(name, num_classes=10, in_channels=1, width=0.5).modules())
    for i, m in enumerate(modules):
        if isinstance(m, nn.Conv2d):
            assert isinstance(modules[i + 1], nn.BatchNorm2d), f"{m} is not followed by BatchNorm2d"


@pytest.mark.parametrize("name", NAMES)
def test_construction_is_deterministic(name: str) -> None:
    torch.manual_seed(0)
    a = build_model(name, num_classes=10, in_channels=1, width=0.5).state_dict()
    torch.manual_seed(0)
    b = build_model(name, num_classes=10, in_channels=1, width=0.5).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", NAMES)
def test_torch_pruning_builds_groups(name: str) -> None:
    model = build_model(name, num_classes=10, in_channels=1, width=0.5).eval()
    classifier = get_classifier(model)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, 1, 28, 28))
    groups = list(graph.get_all_groups(ignored_layers=[classifier], root_module_types=(nn.Conv2d, nn.Linear)))
    assert groups
    # The classifier's outputs (the classes) must never be a pruning root.
    assert all(g[0].dep.target.module is not classifier for g in groups)


def test_mobilenet_small_input_keeps_resolution() -> None:
    x = torch.randn(2, 1, 32, 32)
    small = build_model("mobilenet_v2", 10, in_channels=1, width=0.5, small_input=True).eval()
    large = build_model("mobilenet_v2", 10, in_channels=1, width=0.5, small_input=False).eval()
    assert small.features(x).shape[-1] == 4 and large.features(x).shape[-1] == 1


def test_unknown_kwarg_is_rejected() -> None:
    with pytest.raises(TypeError):
        build_model("resnet20", 10, small_input=True)


def test_torchvision_resnet_matches_torchvision_at_width_one() -> None:
    ours = build_model("resnet18", num_classes=1000).state_dict()
    ref = torchvision.models.resnet18().state_dict()
    assert ours.keys() == ref.keys()
    assert all(ours[k].shape == ref[k].shape for k in ref)


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(PRETRAINED)))
def test_pretrained_rejected_for_non_torchvision(name: str) -> None:
    with pytest.raises(ValueError, match="pretrained"):
        build_model(name, 10, pretrained=True)


def test_pretrained_needs_full_width(tmp_path) -> None:
    with pytest.raises(ValueError, match="width"):
        build_model("resnet18", 10, width=0.5, pretrained=True, weights_dir=str(tmp_path))


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt fails as if offline, so no test can reach the network."""

    def offline(*args, **kwargs):
        raise URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return offline


@pytest.mark.parametrize("name", PRETRAINED)
def test_pretrained_loads_cached_checkpoint(name: str, tmp_path, no_network) -> None:
    torch.manual_seed(1)
    reference = getattr(torchvision.models, name)().state_dict()  # 1000-class RGB ImageNet shapes
    torch.save(reference, weights_cache_path(name, str(tmp_path)))
    torch.manual_seed(2)
    model = build_model(name, num_classes=10, in_channels=1, pretrained=True, weights_dir=str(tmp_path))
    state = model.state_dict()
    head = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    stem = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)) + ".weight"
    assert state[head + ".weight"].shape == (10, reference[head + ".weight"].shape[1])
    assert torch.allclose(state[stem], adapt_stem_weight(reference[stem], 1))
    for key, value in reference.items():
        if key != stem and not key.startswith(head + "."):
            assert torch.equal(state[key], value), key
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_pretrained_rgb_keeps_stem(tmp_path, no_network) -> None:
    reference = torchvision.models.resnet18().state_dict()
    torch.save(reference, weights_cache_path("resnet18", str(tmp_path)))
    model = build_model("resnet18", num_classes=10, pretrained=True, weights_dir=str(tmp_path))
    assert torch.equal(model.conv1.weight, reference["conv1.weight"])


def test_stem_adaptation_preserves_gray_response() -> None:
    rgb = torch.randn(8, 3, 3, 3)
    gray = torch.randn(1, 1, 5, 5)
    expected = nn.functional.conv2d(gray.repeat(1, 3, 1, 1), rgb)
    for k in (1, 2, 4):
        got = nn.functional.conv2d(gray.repeat(1, k, 1, 1), adapt_stem_weight(rgb, k))
        assert torch.allclose(got, expected, atol=1e-5)


def test_pretrained_offline_error_names_cache_path(tmp_path, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise URLError("network disabled in tests")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    expected = os.path.join(str(tmp_path), "resnet18-f37072fd.pth")
    with pytest.raises(RuntimeError) as info:
        build_model("resnet18", 10, pretrained=True, weights_dir=str(tmp_path))
    message = str(info.value)
    assert "resnet18" in message and expected in message and "internet" in message


def test_pretrained_offline_with_real_hub_path(tmp_path, no_network) -> None:
    """Through the real torch.hub code path (download patched to fail), default cache dir."""
    hub = tmp_path / "hub"
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))
    try:
        with pytest.raises(RuntimeError) as info:
            build_model("mobilenet_v2", 10, pretrained=True)
    finally:
        torch.hub.set_dir(old)
    assert str(hub / "checkpoints" / "mobilenet_v2-b0353104.pth") in str(info.value)


def test_imagenet_arch_names_match_the_weights():
    """build_model checks pretrained=True against IMAGENET_ARCHS without importing torchvision."""
    from passprune.models import IMAGENET_ARCHS

    assert sorted(IMAGENET_ARCHS) == sorted(IMAGENET_WEIGHTS)
