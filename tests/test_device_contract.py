"""The device contract of methods (issue 18, defect 2): the search stage puts the model, the pruning space's
example inputs and every batch on ``ctx.device``; a method is refused at once, with the tensor named, when
they are not. Checked for every registered method on a CPU-only machine by giving a context whose device
(``meta``) differs from where its model lives: before the contract, the Torch-Pruning baselines crashed deep
inside a trace on the first GPU run (dense model loaded on CPU, example inputs moved to the GPU)."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO, small_model

from passprune.checkpoint import build, save_dense
from passprune.methods import DeviceContractError, SearchContext, check_devices, get_method, list_methods
from passprune.settings import JobSettings
from passprune.stages.search import SearchJob, dense_on_device, run_search
from passprune.structure import PruningSpace

METHODS = list_methods()
X = torch.zeros(1, 1, 28, 28)


def _ctx(model, space, device, tmp_path, method="random"):
    return SearchContext(
        model=model,
        space=space,
        data=None,  # never reached: the contract is checked before the method runs
        target=0.5,
        options=get_method(method).options({}),
        device=torch.device(device),
        seed=0,
        workdir=tmp_path,
    )


@pytest.fixture(scope="module")
def model_and_space():
    model = small_model("resnet20")
    return model, PruningSpace(model, X)


@pytest.mark.parametrize("method", METHODS)
def test_a_model_off_the_device_is_refused_naming_the_tensor(method, model_and_space, tmp_path):
    model, space = model_and_space
    first = next(iter(model.named_parameters()))[0]
    with pytest.raises(DeviceContractError) as err:
        get_method(method).run(_ctx(model, space, "meta", tmp_path, method))
    msg = str(err.value)
    assert f"parameter {first!r}" in msg and "on cpu" in msg and "ctx.device is meta" in msg, msg
    assert method in msg


@pytest.mark.parametrize("method", METHODS)
def test_example_inputs_off_the_device_are_refused(method, model_and_space, tmp_path):
    model, space = model_and_space
    x = space.example_inputs
    space.example_inputs = x.to("meta")  # the model is on ctx.device (cpu); only the inputs are not
    try:
        with pytest.raises(DeviceContractError, match="example_inputs are on meta, but ctx.device is cpu"):
            get_method(method).run(_ctx(model, space, "cpu", tmp_path, method))
    finally:
        space.example_inputs = x


def test_a_buffer_off_the_device_is_named(tmp_path):
    model = small_model("resnet20")
    space = PruningSpace(model, X)
    bn = next(n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d))
    model.get_submodule(bn).running_var = model.get_submodule(bn).running_var.to("meta")
    with pytest.raises(DeviceContractError, match=rf"buffer '{bn}\.running_var' is on meta"):
        check_devices(_ctx(model, space, "cpu", tmp_path), "random")


def test_indexed_and_unindexed_devices_of_one_kind_agree(model_and_space, tmp_path):
    """``cpu`` vs ``cpu:0`` (like ``cuda`` vs ``cuda:0``) is one device, not a contract breach."""
    model, space = model_and_space
    check_devices(_ctx(model, space, "cpu:0", tmp_path), "random")


@pytest.fixture(scope="module")
def dense_file(tmp_path_factory, fmnist_small):
    """A small dense model file of the arch the stage rebuilds (untrained: devices do not care)."""
    path = tmp_path_factory.mktemp("dense") / "model.pt"
    kwargs = {"num_classes": 10, "in_channels": 1, "width": 0.25}
    torch.manual_seed(0)
    save_dense(path, "resnet20", kwargs, build("resnet20", kwargs), [1, 1, 28, 28])
    return path


def _job(dense, out, method="random", options=None, device="cpu"):
    settings = {
        "data": {"root": str(REPO / "data"), "val_size": 100, "train_subset": 300, "test_subset": 100},
        "device": device,
        "search": {"batch_size": 32, "max_prune_frac": 0.9},
        "method_options": options or {},
        "tracking": {"enabled": False},
    }
    return SearchJob(
        stage="search",
        dataset="fashion_mnist",
        arch="resnet20",
        seed=0,
        out=out,
        settings=JobSettings.from_dict(settings, "search"),
        method=method,
        target=0.5,
        dense=dense,
    )


def test_the_stage_puts_model_and_inputs_on_the_device(dense_file, fmnist_small, tmp_path):
    """The stage loads the dense model (on CPU) and moves it and the example inputs to the job's device
    before the space traces them: on ``meta`` here, a device no checkpoint loads onto by itself."""
    meta = torch.device("meta")
    model, _, space = dense_on_device(_job(dense_file, tmp_path), fmnist_small, meta)
    tensors = [*model.parameters(), *model.buffers(), space.example_inputs]
    assert {t.device for t in tensors} == {meta}
    assert space.model is model and space.groups
    check_devices(_ctx(model, space, "meta", tmp_path), "random")  # what every method call checks


def test_a_sparsity_baseline_runs_through_the_stage_on_cpu(dense_file, tmp_path):
    """Slimming builds a Torch-Pruning pruner from the space's example inputs and trains (defect 2's path):
    through the real stage on CPU it passes the contract and writes its structure."""
    (REPO / "data").mkdir(exist_ok=True)  # a clean clone has no data/ yet; the job fills it
    job = _job(dense_file, tmp_path / "slimming", "slimming", {"epochs": 1, "max_steps_per_epoch": 1})
    search = run_search(job)
    assert search["weights"] == "search_model.pt" and search["weight_train_steps"] == 1
    assert (tmp_path / "slimming" / "structure.json").is_file()
