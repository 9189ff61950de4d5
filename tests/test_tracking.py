"""MLflow mirror: jobs nest under the study run; a broken tracking store never fails a job."""
from __future__ import annotations

from mlflow.tracking import MlflowClient

from passprune.tracking import JobRun, close_study, init_study


def test_job_runs_nest_under_the_study_and_carry_tags(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    state_file = tmp_path / "study.json"
    state = init_study(uri, "exp", "study-x", state_file)
    assert init_study(uri, "exp", "study-x", state_file) == state  # idempotent
    settings = {"enabled": True, "uri": uri, "state_file": str(state_file)}
    for seed in (0, 1):
        with JobRun(settings, f"job{seed}", {"stage": "finetune", "seed": seed}, {"train": {"lr": 0.1}}) as run:
            run.log_metrics({"top1": 50.0 + seed, "bad": None}, step=1)
    client = MlflowClient(uri)
    runs = client.search_runs([state["experiment_id"]], filter_string="tags.stage = 'finetune'")
    assert len(runs) == 2
    for r in runs:
        assert r.data.tags["mlflow.parentRunId"] == state["parent_run_id"]
        assert r.data.params["train.lr"] == "0.1"
        assert r.info.status == "FINISHED"
    assert sorted(r.data.metrics["top1"] for r in runs) == [50.0, 51.0]
    close_study(state_file, "FINISHED")
    assert client.get_run(state["parent_run_id"]).info.status == "FINISHED"
    init_study(uri, "exp", "study-x", state_file)  # a later workflow run reopens the same study run
    assert client.get_run(state["parent_run_id"]).info.status == "RUNNING"


def test_broken_store_does_not_fail_the_job(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    settings = {"enabled": True, "uri": f"sqlite:///{tmp_path}/file/sub/mlflow.db"}
    with JobRun(settings, "job", {"stage": "x"}, {"a": 1}) as run:
        run.log_metrics({"top1": 1.0})
        run.log_artifact(tmp_path / "file")
    assert "results are safe in files" in capsys.readouterr().err


def test_disabled_tracking_makes_no_store(tmp_path):
    with JobRun({"enabled": False, "uri": f"sqlite:///{tmp_path}/m.db"}, "job", {}, {}) as run:
        run.log_metrics({"a": 1.0})
    assert not (tmp_path / "m.db").exists()
