"""MLflow mirror of the result files: one run per job, tagged with its wildcards, nested under a study run.

Files stay the truth: every call here is best-effort, so a tracking failure prints a warning and never
fails a job or loses a result. Two races measured with many concurrent jobs (shared/research/mlflow.md)
are avoided by design: the store and the experiment are created once before the jobs fan out
(``init_study``, called from Snakemake's ``onstart``), and jobs start runs by experiment *id*.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .files import atomic_write_json, read_json

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
DEFAULT_URI = "sqlite:///results/mlflow.db"


def _warn(what: str, err: BaseException) -> None:
    print(f"[tracking] {what} failed, results are safe in files: {type(err).__name__}: {err}", file=sys.stderr)


def tracking_uri(settings: dict | None = None) -> str | None:
    """``None`` disables tracking. Env var MLFLOW_TRACKING_URI wins over the config."""
    settings = settings or {}
    if not settings.get("enabled", True):
        return None
    return os.environ.get("MLFLOW_TRACKING_URI") or settings.get("uri") or DEFAULT_URI


def init_study(uri: str, experiment: str, study: str, state_file: str | Path, tags: dict | None = None) -> dict:
    """Create the store, the experiment and one parent run for the study; remember their ids in a file.

    Idempotent: a second call reuses the experiment and the recorded parent run.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    state_file = Path(state_file)
    if state_file.exists():
        state = read_json(state_file)
        if state.get("experiment_id") == exp_id and state.get("uri") == uri:
            client.update_run(state["parent_run_id"], status="RUNNING")  # a new workflow run of the same study
            return state
    run = client.create_run(exp_id, run_name=study, tags={"passprune.study": study, **(tags or {})})
    state = {"uri": uri, "experiment_id": exp_id, "parent_run_id": run.info.run_id, "study": study}
    atomic_write_json(state_file, state)
    return state


def close_study(state_file: str | Path, status: str) -> None:
    """Mark the study run FINISHED or FAILED when the workflow ends (Snakemake onsuccess / onerror)."""
    from mlflow.tracking import MlflowClient

    state = read_json(state_file)
    MlflowClient(state["uri"]).set_terminated(state["parent_run_id"], status)


class JobRun:
    """Context manager around one MLflow run; every method swallows and reports tracking errors."""

    def __init__(self, settings: dict | None, run_name: str, tags: dict[str, Any], params: dict[str, Any]) -> None:
        self.run = None
        self.client = None
        uri = tracking_uri(settings)
        if uri is None:
            return
        try:
            from mlflow.tracking import MlflowClient

            state_file = (settings or {}).get("state_file", "results/mlflow_study.json")
            state = read_json(state_file) if Path(state_file).exists() else None
            self.client = MlflowClient(uri)
            if state and state.get("uri") == uri:
                exp_id = state["experiment_id"]
                tags = {**tags, "mlflow.parentRunId": state["parent_run_id"]}
            else:  # run outside Snakemake: create (or find) the experiment here
                name = (settings or {}).get("experiment", "passprune")
                exp = self.client.get_experiment_by_name(name)
                exp_id = exp.experiment_id if exp else self.client.create_experiment(name)
            self.run = self.client.create_run(exp_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
            self.log_params(params)
        except Exception as err:  # noqa: BLE001  (tracking is best-effort by contract)
            _warn("starting the MLflow run", err)
            self.run = None

    def _call(self, what: str, fn, *args, **kwargs) -> None:
        if self.run is None:
            return
        try:
            fn(self.run.info.run_id, *args, **kwargs)
        except Exception as err:  # noqa: BLE001
            _warn(what, err)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        flat = _flatten(params)
        items = [Param(k, str(v)[:6000]) for k, v in flat.items()]
        self._call("logging params", lambda rid: self.client.log_batch(rid, params=items))

    def log_metrics(self, metrics: dict[str, Any], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None]
        self._call("logging metrics", lambda rid: self.client.log_batch(rid, metrics=items))

    def log_artifact(self, path: str | Path) -> None:
        self._call("logging an artifact", lambda rid: self.client.log_artifact(rid, str(path)))

    def __enter__(self) -> "JobRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = "FINISHED" if exc_type is None else "FAILED"
        self._call("closing the run", lambda rid: self.client.set_terminated(rid, status))


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out

