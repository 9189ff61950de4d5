"""Training engine: resume after interruption gives the same run, NaN stops with a clear error, the returned
weights are the ones best on validation, BN re-estimation changes statistics but no weights."""

from __future__ import annotations

import pytest
import torch
from conftest import small_model

from passprune.engine import evaluate, recalibrate_bn, train
from passprune.settings import TrainSettings

CFG = dict(epochs=2, batch_size=64, lr=0.05, schedule="cosine", max_steps_per_epoch=3, eval_batch_size=256)


class _Stop(Exception):
    pass


def _stop_after(n):
    def cb(rec):
        if rec["epoch"] >= n:
            raise _Stop  # an interruption right after epoch n's checkpoint was written

    return cb


def test_resume_equals_uninterrupted(fmnist_small, tmp_path):
    cpu = torch.device("cpu")
    a = small_model("resnet20")
    train(a, fmnist_small, TrainSettings(**CFG), device=cpu, seed=0, checkpoint=tmp_path / "a.pt")
    ck = tmp_path / "b.pt"
    with pytest.raises(_Stop):
        train(
            small_model("resnet20"),
            fmnist_small,
            TrainSettings(**CFG),
            device=cpu,
            seed=0,
            checkpoint=ck,
            on_epoch=_stop_after(1),
        )
    b = small_model("resnet20")
    res = train(b, fmnist_small, TrainSettings(**CFG), device=cpu, seed=0, checkpoint=ck)
    assert res.resumed_from_epoch == 1 and len(res.history) == 2
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(va.float(), vb.float(), atol=1e-6), k


def test_checkpoint_written_every_epoch(fmnist_small, tmp_path):
    ck = tmp_path / "c.pt"
    train(
        small_model("resnet20"), fmnist_small, TrainSettings(**CFG), device=torch.device("cpu"), seed=0, checkpoint=ck
    )
    saved = torch.load(ck, weights_only=False)
    assert saved["epoch"] == 1 and len(saved["history"]) == 2
    assert {"model", "optimizer", "scheduler", "best"} <= set(saved)


def test_stale_checkpoint_of_another_run_is_ignored(fmnist_small, tmp_path):
    ck = tmp_path / "d.pt"
    train(
        small_model("resnet20"),
        fmnist_small,
        TrainSettings(**CFG),
        device=torch.device("cpu"),
        seed=0,
        checkpoint=ck,
        fingerprint="run-A",
    )
    res = train(
        small_model("resnet20"),
        fmnist_small,
        TrainSettings(**CFG),
        device=torch.device("cpu"),
        seed=0,
        checkpoint=ck,
        fingerprint="run-B",
    )
    assert res.resumed_from_epoch == 0 and len(res.history) == 2


def test_nan_loss_stops_with_clear_error(fmnist_small, tmp_path):
    cfg = TrainSettings(**{**CFG, "lr": 1e12, "max_steps_per_epoch": 20})
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(
            small_model("resnet20"), fmnist_small, cfg, device=torch.device("cpu"), seed=0, checkpoint=tmp_path / "e.pt"
        )


def test_returns_weights_best_on_validation(fmnist_small):
    model = small_model("resnet20")
    res = train(model, fmnist_small, TrainSettings(**{**CFG, "epochs": 3}), device=torch.device("cpu"), seed=0)
    best = max(h["val_top1"] for h in res.history)
    assert res.best_val_top1 == best
    assert evaluate(model, fmnist_small.val, torch.device("cpu"))["top1"] == pytest.approx(best)


def test_bn_recalibration_touches_only_statistics(fmnist_small):
    model = small_model("resnet20")
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    means = [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    n = recalibrate_bn(model, fmnist_small.train, torch.device("cpu"), batches=3, batch_size=32)
    assert n == 3
    for k, v in weights.items():
        assert torch.equal(model.state_dict()[k], v), k
    after = [m.running_mean for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not torch.equal(a, b) for a, b in zip(means, after))
    assert not model.training


def test_unknown_training_option_is_rejected():
    with pytest.raises(ValueError, match="unknown keys"):
        TrainSettings.from_dict({"epochs": 1, "learning_rate": 0.1})


def test_cpu_training_survives_narrow_strided_shortcuts(fmnist_small, tmp_path):
    """Regression: channels_last on CPU crashed (double free) in the backward pass of a 1x1 stride-2 conv with
    2-7 input channels -- the shortcut of a pruned or quarter-width ResNet-20. Run in a child process, so
    a crash fails this test instead of killing the test session."""
    import subprocess
    import sys

    code = (
        "import torch, torch.nn as nn\n"
        "from passprune.engine import prepare_model, _to_input\n"
        "m = prepare_model(nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8)), 'cpu')\n"
        "x = _to_input(torch.randn(32, 4, 28, 28)).requires_grad_(True)\n"
        "for _ in range(5):\n"
        "    m(x).sum().backward()\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])


def test_closed_form_cosine_gives_the_hand_computed_rates():
    """PASS's search scheduler must give initial_lr * 0.5 * (1 + cos(pi * step / total)) exactly (the rates it
    computed by hand before it shared the engine's schedules), also after a resume from its state_dict."""
    import math

    from passprune.schedule import make_scheduler

    def build():
        ps = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
        opt = torch.optim.Adam([{"params": [ps[0]], "lr": 3e-3}, {"params": [ps[1]], "lr": 3e-2}])
        return ps, opt, make_scheduler(opt, "cosine", 7, closed_form=True)

    ps, opt, sched = build()
    for step in range(7):
        factor = 0.5 * (1.0 + math.cos(math.pi * step / 7))
        assert [g["lr"] for g in opt.param_groups] == [3e-3 * factor, 3e-2 * factor], step
        sum(p.sum() for p in ps).backward()
        opt.step()
        sched.step()
        if step == 3:
            _, opt2, sched2 = build()
            opt2.load_state_dict(opt.state_dict())
            sched2.load_state_dict(sched.state_dict())
    sched2.step()  # opt2 never stepped: only its schedule's position matters here
    assert sched2.last_epoch == 5 and [g["lr"] for g in opt2.param_groups] == [
        3e-3 * 0.5 * (1.0 + math.cos(math.pi * 5 / 7)),
        3e-2 * 0.5 * (1.0 + math.cos(math.pi * 5 / 7)),
    ]


def test_resume_ignores_foreign_and_incomplete_checkpoints(tmp_path):
    """A checkpoint resumes only its own run (fingerprint) and only when it holds every object the loop
    needs; one written by an older layout is ignored, not half-loaded."""
    from passprune import resume

    src, dst = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(dst.parameters(), lr=0.1)
    path = tmp_path / "ck.pt"
    resume.save(path, "fp", {"model": src}, epoch=4)
    kw = {"map_location": "cpu", "tag": "t", "belongs": "another run"}
    assert resume.load(tmp_path / "none.pt", "fp", {"model": dst}, **kw) is None
    assert resume.load(path, "other", {"model": dst}, **kw) is None
    assert resume.load(path, "fp", {"model": dst, "optimizer": opt}, **kw) is None
    assert not torch.equal(dst.weight, src.weight)  # nothing was loaded by the refused attempts
    ck = resume.load(path, "fp", {"model": dst}, **kw)
    assert ck is not None and ck["epoch"] == 4 and torch.equal(dst.weight, src.weight)
