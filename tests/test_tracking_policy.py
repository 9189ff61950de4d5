"""Live MLflow logging to SQLite is refused for cluster executors (many nodes, one file on a network filesystem)
and allowed for local runs, with the fix in the message; Snakemake names its executor as the policy expects."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from passprune.tracking_policy import check_live_store, executor_name, is_cluster_executor

REPO = Path(__file__).resolve().parents[1]
SQLITE = {"enabled": True, "live": True, "uri": "sqlite:///results/mlflow.db", "experiment": "x"}


def test_live_sqlite_from_a_cluster_executor_is_refused_with_the_fix():
    errors = check_live_store(SQLITE, "slurm", env={})
    assert len(errors) == 1
    msg = errors[0]
    assert "'slurm'" in msg and "tracking.uri = sqlite:///results/mlflow.db" in msg
    assert "tracking.live: false" in msg and "MLFLOW_TRACKING_URI=http://" in msg and "docs/mlflow.md" in msg


def test_default_store_is_sqlite_too():
    assert check_live_store(
        {"enabled": True, "live": True}, "slurm", env={}
    )  # no uri: the default sqlite:///results/mlflow.db


@pytest.mark.parametrize("executor", [None, "local", "dryrun", "touch"])
def test_local_runs_keep_live_sqlite(executor):
    """One machine: concurrent local jobs share SQLite safely (tests/test_tracking.py runs 16 at once)."""
    assert check_live_store(SQLITE, executor, env={}) == []


@pytest.mark.parametrize(
    "tracking",
    [
        {**SQLITE, "live": False},  # files + track-sync at the end
        {**SQLITE, "enabled": False},
        {**SQLITE, "uri": "http://headnode:5000"},  # a server serialises the writes
    ],
    ids=["not-live", "disabled", "server"],
)
def test_cluster_runs_that_do_not_write_sqlite_live_pass(tracking):
    assert check_live_store(tracking, "slurm", env={}) == []


def test_the_environment_decides_the_store_as_jobs_see_it():
    assert check_live_store(SQLITE, "slurm", env={"MLFLOW_TRACKING_URI": "http://headnode:5000"}) == []
    server = {**SQLITE, "uri": "http://headnode:5000"}
    (msg,) = check_live_store(server, "slurm", env={"MLFLOW_TRACKING_URI": "sqlite:////shared/mlflow.db"})
    assert "MLFLOW_TRACKING_URI = sqlite:////shared/mlflow.db" in msg


def test_the_paper_config_passes_on_slurm():
    tracking = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["tracking"]
    assert check_live_store(tracking, "slurm", env={}) == []


def test_cluster_executors():
    assert not is_cluster_executor(None) and not is_cluster_executor("local")
    assert is_cluster_executor("slurm") and is_cluster_executor("cluster-generic")


def test_snakemake_names_its_executor_in_onstart(tmp_path):
    """``workflow.executor_plugin`` is None while the Snakefile is parsed and named once the workflow executes."""
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """
            from passprune.tracking_policy import executor_name
            PARSED = executor_name(workflow)

            onstart:
                open("executor.txt", "w").write(f"{PARSED} {executor_name(workflow)}")

            rule all:
                output: "done.txt"
                shell: "touch {output}"
            """
        )
    )
    snakemake = Path(sys.executable).parent / "snakemake"
    proc = subprocess.run(
        [str(snakemake), "--cores", "1", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "executor.txt").read_text() == "None local"
    assert executor_name(object()) is None


def test_the_workflow_refuses_live_sqlite_on_slurm_before_submitting(tmp_path):
    """The real Snakefile wires the policy into onstart: a study logging live to SQLite, sent to the SLURM
    executor, stops with the fix before any job is submitted (no sbatch is needed to see it)."""
    cfg = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    cfg["tracking"]["live"] = True
    (tmp_path / "live.yaml").write_text(yaml.safe_dump(cfg))
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run(
        [str(snakemake), "-s", str(REPO / "Snakefile"), "--configfile", "live.yaml", "--executor", "slurm"]
        + ["--jobs", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "would log live to SQLite" in out and "tracking.live: false" in out
    assert not (tmp_path / "results" / "ci-tiny" / "logs").exists()  # nothing ran
