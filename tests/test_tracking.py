"""MLflow mirror: jobs nest under the study run; a job's run holds what its files hold (and track-verify proves
it); artifacts live under the study's results and survive moving the folder; 16 concurrent jobs on the SQLite
store lose nothing; track-sync restores what is missing, idempotently; a broken store never fails a job."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from passprune.files import atomic_write_json
from passprune.tracking import (
    JobRun,
    client_for,
    close_study,
    init_study,
    job_log_candidates,
    job_record,
    local_artifact_destination,
)
from passprune.tracking_sync import STATE_NAME as STATE
from passprune.tracking_sync import job_records, open_study, sync_study, verify_study

JOBS = Path(__file__).with_name("mlflow_jobs.py")
QUIET = open("/dev/null", "w")


def test_job_runs_nest_under_the_study_and_carry_tags(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    state_file = tmp_path / "study.json"
    state = init_study(uri, "exp", "study-x", state_file)
    assert init_study(uri, "exp", "study-x", state_file) == state  # idempotent
    client = MlflowClient(uri)
    exp = client.get_experiment(state["experiment_id"])
    assert exp.name == "exp/study-x"  # one experiment per study
    assert exp.artifact_location == "mlflow-artifacts:/study-x/mlflow"  # relative to the artifact destination
    settings = {"enabled": True, "live": True, "uri": uri, "state_file": str(state_file)}
    for seed in (0, 1):
        with JobRun(settings, f"job{seed}", {"stage": "finetune", "seed": seed}, {"train": {"lr": 0.1}}) as run:
            run.log_metrics({"top1": 50.0 + seed, "bad": None, "flag": True}, step=1)
    runs = client.search_runs([state["experiment_id"]], filter_string="tags.stage = 'finetune'")
    assert len(runs) == 2
    for r in runs:
        assert r.data.tags["mlflow.parentRunId"] == state["parent_run_id"]
        assert r.data.params["train.lr"] == "0.1"
        assert r.info.status == "FINISHED"
        assert set(r.data.metrics) == {"top1"}  # None and booleans are not metrics
    assert sorted(r.data.metrics["top1"] for r in runs) == [50.0, 51.0]
    close_study(state_file, "FINISHED")
    assert client.get_run(state["parent_run_id"]).info.status == "FINISHED"
    init_study(uri, "exp", "study-x", state_file)  # a later workflow run reopens the same study run
    assert client.get_run(state["parent_run_id"]).info.status == "RUNNING"


def test_study_run_holds_config_and_provenance(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config = {
        "study": "prov",
        "seeds": [0, 1],
        "finetune": {"lr": 0.01},
        "device": "cpu",
        "tracking": {"enabled": True, "uri": uri, "experiment": "e", "live": True},
    }
    study_dir = tmp_path / "results" / "prov"
    study_dir.mkdir(parents=True)
    (study_dir / "study.json").write_text(json.dumps({"study": "prov", "config": config, "dense_dirs": []}))
    state = init_study(uri, "e", "prov", study_dir / "mlflow_study.json")
    client = MlflowClient(uri)
    run = client.get_run(state["parent_run_id"])
    assert run.data.params["finetune.lr"] == "0.01" and run.data.params["seeds"] == "[0, 1]"
    tags = run.data.tags
    assert len(tags["passprune.git_commit"]) == 40 and tags["passprune.git_dirty"] in ("true", "false")
    assert tags["passprune.config_hash"] == state["config_hash"]
    assert tags["passprune.version.torch"].startswith("2.") and tags["passprune.version.snakemake"]
    assert tags["passprune.device"] == "cpu" and tags["passprune.device_resolved"] == "cpu"
    config_file = local_artifact_destination(uri) / "prov" / "mlflow" / run.info.run_id / "artifacts" / "config.json"
    assert json.loads(config_file.read_text()) == config
    # a changed config is another study run (parameters cannot change), the same one is reused
    config["finetune"]["lr"] = 0.02
    (study_dir / "study.json").write_text(json.dumps({"study": "prov", "config": config, "dense_dirs": []}))
    assert init_study(uri, "e", "prov", study_dir / "mlflow_study.json")["parent_run_id"] != state["parent_run_id"]


def test_log_locations_follow_the_workflow_rules():
    s = Path("results/st")
    run = s / "d/a/seed3/pass/macs0.3"
    assert job_log_candidates(run) == [s / "logs/finetune/d/a/seed3/pass/macs0.3.log"]
    assert job_log_candidates(run / "search") == [s / "logs/search/d/a/seed3/pass/macs0.3.log"]
    x = s / "d/a/seed3/xfer_structure-pass-from-src/macs0.3"
    assert job_log_candidates(x)[0] == s / "logs/transfer/d/a/seed3/structure-pass-from-src/macs0.3.log"
    h = s / "d/a/seed3/xfer_hypernet-pass-from-src/macs0.3/search"
    assert job_log_candidates(h)[0] == s / "logs/transfer/d/a/seed3/hypernet-pass-from-src/macs0.3.log"
    dense = Path("results/_dense/d/a/seed3/0123456789ab")
    assert job_log_candidates(dense) == [dense / "pretrain.log"]


def test_job_record_is_derived_from_the_files(tmp_path):
    out = tmp_path / "results" / "_dense" / "fashion_mnist" / "resnet20" / "seed2" / "abcdefabcdef"
    atomic_write_json(
        out / "metrics.json",
        {
            "stage": "pretrain",
            "dataset": "fashion_mnist",
            "arch": "resnet20",
            "seed": 2,
            "method": "dense",
            "top1": 88.5,
            "macs": 1000,
            "history": [{"epoch": 1, "val_top1": 70.0}, {"epoch": 2, "val_top1": float("nan")}],
            "settings": {"train": {"lr": 0.1}},
            "flag": True,
            "provenance": {"torch": "x"},
        },
    )
    (out / "pretrain.log").write_text("log\n")
    (out / "model.pt").write_bytes(b"weights")
    rec = job_record(out, log_models=True)
    assert rec.name == "fashion_mnist/resnet20/seed2/dense" and rec.stage == "pretrain"
    assert rec.tags == {
        "stage": "pretrain",
        "dataset": "fashion_mnist",
        "arch": "resnet20",
        "seed": "2",
        "method": "dense",
    }
    assert rec.params == {"train.lr": "0.1"}
    assert rec.points["top1"] == {(0, 88.5)} and rec.points["val_top1"] == {(1, 70.0), (2, "nan")}
    assert rec.points["epoch"] == {(1, 1.0), (2, 2.0)} and "flag" not in rec.points
    assert set(rec.files) == {"metrics.json"} and set(rec.present) == {"job.log", "model.pt"}
    assert "model.pt" not in job_record(out).present  # models only with tracking.log_models
    assert job_record(tmp_path) is None


@pytest.fixture(scope="module")
def sqlite_study(tmp_path_factory):
    """16 concurrent jobs (a search and a fine-tuning each) logging to the SQLite store, as the workflow runs them."""
    work = tmp_path_factory.mktemp("sqlite16")
    uri = "sqlite:///results/mlflow.db"
    config = {
        "study": "s16",
        "tracking": {"enabled": True, "uri": uri, "experiment": "t", "log_models": False, "live": True},
    }
    (work / "results" / "s16").mkdir(parents=True)
    (work / "results" / "s16" / "study.json").write_text(
        json.dumps({"study": "s16", "config": config, "dense_dirs": []})
    )
    env = {
        "PASSPRUNE_TRACKING": json.dumps({**config["tracking"], "state_file": "results/s16/mlflow_study.json"}),
        "OMP_NUM_THREADS": "1",
    }
    init = subprocess.run(
        [
            sys.executable,
            "-m",
            "passprune.cli",
            "track-init",
            "--uri",
            uri,
            "--experiment",
            "t",
            "--study",
            "s16",
            "--state-file",
            "results/s16/mlflow_study.json",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert init.returncode == 0, init.stderr[-2000:]
    t0 = time.time()
    import os

    jobs = subprocess.run(
        [sys.executable, str(JOBS), "results", "s16", "--jobs", "16", "--epochs", "8"],
        cwd=work,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert jobs.returncode == 0, (jobs.stdout + jobs.stderr)[-3000:]
    assert "16 of 16 jobs finished" in jobs.stdout
    return {"work": work, "uri": uri, "seconds": time.time() - t0}


def test_16_concurrent_jobs_on_sqlite_verify_finds_every_run_and_point(sqlite_study):
    work = sqlite_study["work"]
    records = job_records(work / "results" / "s16")
    assert len(records) == 32 and {r.stage for r in records} == {"search", "finetune"}
    points = sum(r.n_points for r in records)
    assert points > 32 * 8
    res = subprocess.run(
        [sys.executable, "-m", "passprune.cli", "track-verify", "results/s16"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert f"32 jobs, {points} metric points" in res.stdout and "; 0 differences" in res.stdout
    # every run carries its files, the kept-ratio plot and the job's own log
    client = MlflowClient(f"sqlite:///{work}/results/mlflow.db")
    state = json.loads((work / "results/s16/mlflow_study.json").read_text())
    run = client.search_runs([state["experiment_id"]], filter_string="tags.stage = 'finetune' and tags.seed = '3'")[0]
    arts = work / "results" / "s16" / "mlflow" / run.info.run_id / "artifacts"
    assert sorted(p.name for p in arts.iterdir()) == ["job.log", "kept_ratio.png", "metrics.json"]
    assert (arts / "kept_ratio.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "finetune epoch 8" in (arts / "job.log").read_text()


def test_moved_results_folder_still_verifies(sqlite_study, tmp_path, monkeypatch):
    """Nothing in the store names the old place: the database and the artifacts move together."""
    moved = tmp_path / "elsewhere"
    shutil.copytree(sqlite_study["work"] / "results", moved / "results")
    monkeypatch.chdir(moved)
    study = open_study(Path("results/s16"), uri="sqlite:///results/mlflow.db", create=False)
    assert verify_study(study, out=QUIET) == []


def test_verify_reports_losses_and_sync_restores_them_idempotently(sqlite_study, tmp_path, monkeypatch):
    work = tmp_path / "copy"
    shutil.copytree(sqlite_study["work"] / "results", work / "results")
    monkeypatch.chdir(work)
    uri = "sqlite:///results/mlflow.db"
    study = open_study(Path("results/s16"), uri=uri)
    client = client_for(uri)  # relative SQLite URI: resolved here, not from MLflow's per-URI cache
    runs = {r.info.run_name: r for r in client.search_runs([study.state["experiment_id"]])}
    # lose things: one run entirely, one artifact, metric points of another (as a dead server would)
    gone = runs["fashion_mnist/resnet20/seed5/l1/macs0.5"]
    client.delete_run(gone.info.run_id)
    one = runs["fashion_mnist/resnet20/seed6/pass/macs0.5/search"]
    (work / "results/s16/mlflow" / one.info.run_id / "artifacts" / "structure.json").unlink()
    (work / "results/s16/mlflow" / one.info.run_id / "artifacts" / "kept_ratio.png").unlink()
    # a job whose logging stopped after epoch 3 (its earlier complete run gone): params and 3 epochs only
    seven = runs["fashion_mnist/resnet20/seed7/l1/macs0.5"]
    client.delete_run(seven.info.run_id)
    rec = job_record(work / "results/s16/fashion_mnist/resnet20/seed7/l1/macs0.5")
    partial = client.create_run(
        study.state["experiment_id"],
        run_name=rec.name,
        tags={**rec.tags, "mlflow.parentRunId": study.state["parent_run_id"]},
    )
    from mlflow.entities import Metric, Param

    client.log_batch(
        partial.info.run_id,
        params=[Param(k, v) for k, v in rec.params.items()],
        metrics=[Metric(k, float(v), 0, s) for k, pts in rec.points.items() for s, v in pts if 1 <= s <= 3],
    )
    diffs = verify_study(study, out=QUIET)
    assert any("seed5/l1/macs0.5: no run" in d for d in diffs), diffs
    assert any("seed6/pass/macs0.5/search" in d and "artifact structure.json missing" in d for d in diffs)
    assert any(partial.info.run_id in d and "metric val_top1 step 5" in d for d in diffs)
    assert any(partial.info.run_id in d and "status RUNNING" in d for d in diffs)
    first = sync_study(study, out=QUIET)
    assert first["created"] == 1 and first["completed"] == 2 and first["artifacts"] >= 2 + 3
    assert verify_study(study, out=QUIET) == []
    second = sync_study(study, out=QUIET)
    assert second["complete"] == 32 and second["points"] == second["artifacts"] == second["created"] == 0


def test_broken_store_does_not_fail_the_job(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    settings = {"enabled": True, "live": True, "uri": f"sqlite:///{tmp_path}/file/sub/mlflow.db"}
    with JobRun(settings, "job", {"stage": "x"}, {"a": 1}) as run:
        run.log_metrics({"top1": 1.0})
        run.log_artifact(tmp_path / "file")
        run.log_outputs(tmp_path)
    assert "results are safe in files" in capsys.readouterr().err


def test_dead_server_costs_a_job_seconds_and_one_warning(tmp_path, capsys, monkeypatch):
    """Against a server that is down, the first call gives up after MLflow's (shortened) retries and tracking
    is off for the rest of the job: no per-epoch waits."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    t0 = time.time()
    with JobRun({"enabled": True, "live": True, "uri": f"http://127.0.0.1:{port}"}, "job", {}, {}) as run:
        for epoch in range(50):
            run.log_metrics({"loss": 1.0}, epoch)
        run.log_outputs(tmp_path)
    assert time.time() - t0 < 30
    err = capsys.readouterr().err
    assert err.count("MLflow is off for the rest of this job") == 1


def test_disabled_tracking_makes_no_store(tmp_path):
    with JobRun({"enabled": False, "uri": f"sqlite:///{tmp_path}/m.db"}, "job", {}, {}) as run:
        run.log_metrics({"a": 1.0})
    assert not (tmp_path / "m.db").exists()


def test_live_false_jobs_only_write_files_and_sync_mirrors_them(tmp_path):
    """``tracking.live: false``: a job opens no store and imports no mlflow; its files are what track-sync
    mirrors later (tests/test_mlflow_server.py covers the sync itself)."""
    import subprocess
    import sys

    code = (
        "import sys; from passprune.tracking import JobRun\n"
        f"s = {{'enabled': True, 'live': False, 'uri': 'sqlite:///{tmp_path}/m.db'}}\n"
        "with JobRun(s, 'job', {'stage': 'x'}, {'a': 1}) as run:\n"
        "    run.log_metrics({'top1': 1.0}); run.log_outputs('.')\n"
        "print('mlflow' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
    assert not (tmp_path / "m.db").exists()


def test_a_relative_sqlite_uri_follows_the_working_directory(tmp_path, monkeypatch):
    """MLflow caches one store per URI string in a process: without resolving, ``sqlite:///results/mlflow.db``
    opened in one study folder kept answering from it after a chdir (two test_tracking tests read another
    test's store that way in the full suite)."""
    for name in ("a", "b"):
        (tmp_path / name / "results").mkdir(parents=True)
        monkeypatch.chdir(tmp_path / name)
        client_for("sqlite:///results/mlflow.db").create_experiment(f"only-in-{name}")
    for name, other in (("a", "b"), ("b", "a")):
        monkeypatch.chdir(tmp_path / name)
        names = {e.name for e in client_for("sqlite:///results/mlflow.db").search_experiments()}
        assert f"only-in-{name}" in names and f"only-in-{other}" not in names


# ----------------------------------------------------------------------------- fine-tuning budgets
def _budget_job(study_dir: Path, budget: str | None, top1: float) -> Path:
    """A finished fine-tuning job of PASS at 0.3, seed 0: in the run folder itself (no budget) or in its budget's
    ``ft-<budget>`` folder, with its Snakemake-style log where the finetune rule puts it."""
    run = study_dir / "fashion_mnist" / "resnet20" / "seed0" / "pass" / "macs0.3"
    out = run / f"ft-{budget}" if budget else run
    settings = {"finetune": {"epochs": 1}, **({"budget": {"name": budget, "steps": 100}} if budget else {})}
    metrics = {
        "stage": "finetune",
        "dataset": "fashion_mnist",
        "arch": "resnet20",
        "seed": 0,
        "method": "pass",
        "family": "pass",
        "target": 0.3,
        "top1": top1,
        "history": [{"epoch": 1, "val_top1": top1}],
        "settings": settings,
    }
    atomic_write_json(out / "metrics.json", metrics)
    log = study_dir / "logs" / "finetune" / "fashion_mnist" / "resnet20" / "seed0" / "pass"
    log = log / "macs0.3" / f"ft-{budget}.log" if budget else log / "macs0.3.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"finetune {budget}\n")
    return out


def test_a_budgets_finetuning_run_is_named_and_tagged_with_its_budget(tmp_path):
    """Each budget's fine-tuning of one structure has its own run name (``.../macs0.3/ft-<budget>``) and a
    ``budget`` tag, as the finetune stage names it (finetune_run_name); a study without budgets keeps its names."""
    from passprune.study import BUDGET_DIR
    from passprune.tracking import BUDGET_DIR as TRACKED_DIR
    from passprune.tracking import finetune_run_name

    assert TRACKED_DIR == BUDGET_DIR  # the run name's suffix is the budget's folder
    study = tmp_path / "results" / "sb"
    outs = {b: _budget_job(study, b, 80.0 + i) for i, b in enumerate(("s100", "s1560"))}
    base = "fashion_mnist/resnet20/seed0/pass/macs0.3"
    for b, out in outs.items():
        rec = job_record(out)
        assert rec.name == f"{base}/ft-{b}" == finetune_run_name("fashion_mnist", "resnet20", 0, "pass", 0.3, b)
        assert rec.tags["budget"] == b and rec.tags["target"] == "0.3"
        assert (
            rec.present["job.log"] == study / "logs/finetune/fashion_mnist/resnet20/seed0/pass/macs0.3" / f"ft-{b}.log"
        )
    assert sorted(r.name for r in job_records(study)) == [f"{base}/ft-s100", f"{base}/ft-s1560"]  # no clash
    plain = _budget_job(tmp_path / "results" / "one", None, 79.0)
    rec = job_record(plain)
    assert rec.name == base == finetune_run_name("fashion_mnist", "resnet20", 0, "pass", 0.3)
    assert "budget" not in rec.tags and rec.present["job.log"].name == "macs0.3.log"


def test_track_sync_and_verify_keep_each_budgets_run_apart(tmp_path, monkeypatch, capsys):
    """A study with budgets mirrors one run per budget (track-sync), and track-verify finds each complete; a job
    that logs live under the stage's name for its budget logs no name mismatch."""
    work = tmp_path / "w"
    study_dir = work / "results" / "sb"
    for i, b in enumerate(("s100", "s468")):
        _budget_job(study_dir, b, 80.0 + i)
    config = {"study": "sb", "tracking": {"enabled": True, "uri": "sqlite:///results/mlflow.db", "experiment": "t"}}
    (study_dir / "study.json").write_text(json.dumps({"study": "sb", "config": config, "dense_dirs": []}))
    monkeypatch.chdir(work)
    study = open_study(Path("results/sb"), uri="sqlite:///results/mlflow.db")
    from passprune.tracking import finetune_run_name

    live = {"enabled": True, "live": True, "uri": "sqlite:///results/mlflow.db", "state_file": str(study_dir / STATE)}
    name = finetune_run_name("fashion_mnist", "resnet20", 0, "pass", 0.3, "s100")  # as the finetune stage names it
    with JobRun(live, name, {"stage": "finetune", "budget": "s100"}, {}) as run:
        run.log_outputs(study_dir / "fashion_mnist/resnet20/seed0/pass/macs0.3/ft-s100")
    assert "names differ" not in capsys.readouterr().err
    assert sync_study(study, out=QUIET)["created"] == 1  # the live one is found under its name
    assert verify_study(study, out=QUIET) == []
    runs = client_for("sqlite:///results/mlflow.db").search_runs([study.state["experiment_id"]])
    named = {r.info.run_name: r.data.tags.get("budget") for r in runs if r.data.tags.get("stage") == "finetune"}
    base = "fashion_mnist/resnet20/seed0/pass/macs0.3"
    assert named == {f"{base}/ft-s100": "s100", f"{base}/ft-s468": "s468"}
