"""Nothing lost, counts verified: bring a study's MLflow runs up to its result files, and prove they match.

``sync_study`` logs, idempotently, every job whose files exist but whose run is missing or incomplete (a
job that ran while the server was down, or whose logging stopped half-way). ``verify_study`` reads the
store back through the MLflow API and lists every difference from the files: missing or extra runs,
status, tags, parameters, metric points and artifacts (the JSON files byte for byte).

Which jobs belong to a study: every finished job folder under ``results/<study>/`` and the dense-model
folders the workflow lists in ``results/<study>/study.json`` (dense models are shared between studies and
live under ``results/_dense/``). A job's run is found among the study run's children by its run name.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .files import read_json
from .settings import TrackingSettings
from .tracking import (
    ARTIFACT_DIR,
    DIGEST_TAG,
    LOG,
    MAX_PARAM,
    PLOT,
    Conflict,
    JobRecord,
    _all_artifacts,
    artifact_repo,
    canon,
    client_for,
    complete_run,
    config_hash,
    experiment_name,
    file_sha256,
    flatten,
    init_study,
    job_record,
    study_info,
    tracking_uri,
)

STATE_NAME = "mlflow_study.json"


# ----------------------------------------------------------------------------- the study's jobs and runs
def job_dirs(study_dir: Path, extra_dirs: list[Path] | None = None) -> list[Path]:
    """Folders of the study's finished jobs: under the study folder (not its MLflow artifacts, logs or reports)
    and the dense folders of its study file, plus ``extra_dirs``."""
    study_dir = Path(study_dir)
    skip = {study_dir / ARTIFACT_DIR, study_dir / "logs", study_dir / "benchmarks", study_dir / "reports"}
    found = []
    for pattern in ("metrics.json", "search.json"):
        for p in study_dir.rglob(pattern):
            if not any(s == p or s in p.parents for s in skip):
                found.append(p.parent)
    dense = [Path(d) for d in study_info(study_dir / STATE_NAME).get("dense_dirs", [])]
    for d in dense + list(extra_dirs or []):
        found += [p.parent for p in Path(d).rglob("metrics.json")] if d.is_dir() else []
    return sorted(set(found))


def job_records(study_dir: Path, extra_dirs: list[Path] | None = None, log_models: bool = False) -> list[JobRecord]:
    records = [r for d in job_dirs(study_dir, extra_dirs) if (r := job_record(d, log_models=log_models)) is not None]
    names: dict[str, Path] = {}
    for r in records:
        if r.name in names:
            raise ValueError(f"two job folders give the same run name {r.name!r}: {names[r.name]} and {r.out_dir}")
        names[r.name] = r.out_dir
    return records


def child_runs(client, exp_id: str, parent_id: str) -> list:
    """Every run under the study run (all pages)."""
    runs, token = [], None
    while True:
        page = client.search_runs(
            [exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=1000, page_token=token
        )
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _pick(candidates: list, record: JobRecord):
    """The run that stands for a job: one already complete for these files, else the newest."""
    digest = record.digest()
    done = [r for r in candidates if r.data.tags.get(DIGEST_TAG) == digest]
    pool = done or candidates
    return max(pool, key=lambda r: (r.info.status == "FINISHED", r.info.start_time or 0)) if pool else None


@dataclass
class Study:
    """A study folder resolved against a store: its settings, state and the store's client."""

    study_dir: Path
    uri: str
    state: dict[str, Any]
    config: dict[str, Any]
    client: Any = field(repr=False)

    @property
    def log_models(self) -> bool:
        return TrackingSettings.of(self.config.get("tracking")).log_models


def open_study(study_dir: str | Path, uri: str | None = None, create: bool = True) -> Study:
    """The study's store and study run. The store is ``uri``, else MLFLOW_TRACKING_URI, else the one the study
    was logged to (its state file), else its config's. ``create``: make the experiment and study run when that
    store has none (track-sync after the store was down at the start); otherwise find them, writing nothing."""
    import os

    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(f"{study_dir}: no such study folder (give results/<study>, the config's study:)")
    state_file = study_dir / STATE_NAME
    info = study_info(state_file)
    config = info.get("config") or {}
    tracking = TrackingSettings.of(config.get("tracking"))
    state = read_json(state_file) if state_file.is_file() else {}
    uri = (
        uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or state.get("uri")
        or tracking_uri(replace(tracking, enabled=True))
    )
    study = info.get("study") or state.get("study") or study_dir.name
    experiment = tracking.experiment
    if not info and not state:
        raise FileNotFoundError(
            f"{state_file.with_name('study.json')} and {state_file.name} are missing: the workflow's "
            "onstart writes them; run the study with snakemake first"
        )
    if create:
        state = init_study(uri, experiment, study, state_file, reopen=False)
    elif state.get("uri") != uri:
        state = _find_study_run(client_for(uri), experiment_name(experiment, study), study, config)
    return Study(study_dir, uri, state, config, client_for(uri))


def _find_study_run(client, name: str, study: str, config: dict) -> dict[str, Any]:
    """The newest study run of ``study`` in another store than the state file names (verify writes nothing)."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise FileNotFoundError(f"the store has no experiment {name!r}; run `passprune track-sync` to log the study")
    want = f" and tags.`passprune.config_hash` = '{config_hash(config)}'" if config else ""
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`passprune.study` = '{study}'" + want,
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise FileNotFoundError(f"experiment {name!r} has no study run for this config; run `passprune track-sync`")
    return {"uri": None, "experiment_id": exp.experiment_id, "parent_run_id": runs[0].info.run_id, "study": study}


# ----------------------------------------------------------------------------- sync
def sync_study(study: Study, extra_dirs: list[Path] | None = None, out=sys.stdout) -> dict[str, int]:
    """Create or complete the run of every job whose files exist; skip runs already complete for them."""
    client, state = study.client, study.state
    records = job_records(study.study_dir, extra_dirs, study.log_models)
    by_name: dict[str, list] = {}
    for r in child_runs(client, state["experiment_id"], state["parent_run_id"]):
        by_name.setdefault(r.info.run_name, []).append(r)
    counts = {
        "jobs": len(records),
        "complete": 0,
        "created": 0,
        "completed": 0,
        "params": 0,
        "points": 0,
        "artifacts": 0,
    }
    for rec in records:
        run = _pick(by_name.get(rec.name, []), rec)
        if (
            run is not None
            and run.data.tags.get(DIGEST_TAG) == rec.digest()
            and run.info.status == "FINISHED"
            and set(rec.files) | set(rec.present)
            <= set(_all_artifacts(artifact_repo(study.uri, run.info.artifact_uri)))
        ):
            counts["complete"] += 1  # completed for these very files, artifacts still there: nothing to do
            continue
        created = False
        try:
            if run is None:
                raise Conflict("no run")
            added = complete_run(study.uri, run.info.run_id, rec, client=client)
        except Conflict as why:
            run = _create(client, state, rec)
            created = True
            if str(why) != "no run":
                print(f"  {rec.name}: the existing run contradicts the files ({why}); logged a new run", file=out)
            added = complete_run(study.uri, run.info.run_id, rec, client=client)
        counts["created" if created else "completed"] += 1
        for k in ("params", "points", "artifacts"):
            counts[k] += added[k]
        print(
            f"  {'created' if created else 'completed'} {rec.name}: +{added['params']} params, "
            f"+{added['points']} metric points, +{added['artifacts']} artifacts",
            file=out,
        )
    print(
        f"track-sync {study.study_dir}: {counts['jobs']} jobs with files; {counts['complete']} runs already "
        f"complete, {counts['completed']} completed, {counts['created']} created ({counts['points']} metric "
        f"points, {counts['artifacts']} artifacts added)",
        file=out,
    )
    return counts


def _create(client, state: dict, rec: JobRecord):
    start = rec.end_ms - int(1000 * rec.wall_seconds) if rec.wall_seconds else rec.end_ms
    tags = {**rec.tags, "mlflow.parentRunId": state["parent_run_id"], "passprune.synced": "true"}
    return client.create_run(state["experiment_id"], start_time=start, tags=tags, run_name=rec.name)


# ----------------------------------------------------------------------------- verify
def verify_study(study: Study, extra_dirs: list[Path] | None = None, out=sys.stdout) -> list[str]:
    """Every difference between the store and the files, one line each (empty: they agree)."""
    client, state = study.client, study.state
    diffs: list[str] = []
    records = job_records(study.study_dir, extra_dirs, study.log_models)
    diffs += _verify_study_run(study)
    runs = child_runs(client, state["experiment_id"], state["parent_run_id"])
    by_name: dict[str, list] = {}
    for r in runs:
        by_name.setdefault(r.info.run_name, []).append(r)
    names = {r.name for r in records}
    for name in sorted(set(by_name) - names):
        for r in by_name[name]:
            diffs.append(f"{name}: run {r.info.run_id} ({r.info.status}) has no result files")
    n_points = n_art = superseded = 0
    for rec in records:
        cands = by_name.get(rec.name, [])
        run = _pick(cands, rec)
        if run is None:
            diffs.append(f"{rec.name}: no run in the store ({rec.out_dir} has its files)")
            continue
        superseded += len(cands) - 1
        where = f"{rec.name} (run {run.info.run_id})"
        diffs += _verify_fields(run, rec, where)
        points_diffs, n = _verify_points(client, run, rec, where)
        diffs += points_diffs
        n_points += n
        artifact_diffs, n = _verify_artifacts(study.uri, run, rec, where)
        diffs += artifact_diffs
        n_art += n
    for d in diffs:
        print(f"DIFF {d}", file=out)
    print(
        f"track-verify {study.study_dir}: {len(records)} jobs, {n_points} metric points and {n_art} artifacts "
        f"match; {superseded} superseded runs (earlier attempts) ignored; {len(diffs)} differences",
        file=out,
    )
    return diffs


def _verify_fields(run: Any, rec: JobRecord, where: str) -> list[str]:
    """Status, tags and params of one run against its files: a run that is not FINISHED, or whose tags or params
    differ, would be read wrongly by anyone filtering the store."""
    diffs = []
    if run.info.status != "FINISHED":
        diffs.append(f"{where}: status {run.info.status}, files say the job finished")
    for k, v in rec.tags.items():
        if run.data.tags.get(k) != v:
            diffs.append(f"{where}: tag {k}: files {v!r}, store {run.data.tags.get(k)!r}")
    for k, v in rec.params.items():
        if run.data.params.get(k) != v:
            diffs.append(f"{where}: param {k}: files {v!r}, store {run.data.params.get(k)!r}")
    return diffs


def _verify_points(client: Any, run: Any, rec: JobRecord, where: str) -> tuple[list[str], int]:
    """Every metric point the files hold against the run's history: ``(differences, points that match)``. A step
    whose value differs is reported once (as the files' value), not again as an extra store point."""
    diffs, n_points = [], 0
    for key in sorted(set(rec.points) | set(run.data.metrics)):
        want = rec.points.get(key, set())
        if key not in rec.points:
            continue  # a curve logged live that no file holds (see docs/mlflow.md): not compared
        have = {(m.step, canon(m.value)) for m in client.get_metric_history(run.info.run_id, key)}
        n_points += len(want & have)
        for step, value in sorted(want - have, key=repr):
            diffs.append(
                f"{where}: metric {key} step {step}: files {value}, store "
                f"{sorted(v for s, v in have if s == step) or 'missing'}"
            )
        for step, value in sorted(have - want, key=repr):
            if not any(s == step for s, _ in want - have):
                diffs.append(f"{where}: metric {key} step {step}: store {value}, not in the files")
    return diffs, n_points


def _verify_artifacts(uri: str, run: Any, rec: JobRecord, where: str) -> tuple[list[str], int]:
    """The run's artifacts: ``(differences, artifacts that match)``. Result files must be byte-identical (they
    are downloaded and hashed); the kept-ratio plot, the job's log and model.pt need only be present."""
    diffs, n_art = [], 0
    repo = artifact_repo(uri, run.info.artifact_uri)
    arts = _all_artifacts(repo)
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in rec.files.items():
            if name not in arts:
                diffs.append(f"{where}: artifact {name} missing")
                continue
            got = repo.download_artifacts(name, tmp)
            if file_sha256(got) != file_sha256(path):
                diffs.append(f"{where}: artifact {name} differs from {path}")
            else:
                n_art += 1
    for name in rec.present:
        if name not in arts:
            diffs.append(f"{where}: artifact {name} missing")
        else:
            n_art += 1
    return diffs, n_art


def _verify_study_run(study: Study) -> list[str]:
    client, state = study.client, study.state
    try:
        run = client.get_run(state["parent_run_id"])
    except Exception as err:  # noqa: BLE001
        return [f"study run {state.get('parent_run_id')}: not in the store ({type(err).__name__})"]
    diffs = []
    where = f"study run {run.info.run_name} ({run.info.run_id})"
    if study.config:
        for k, v in flatten(study.config).items():
            v = str(v)[:MAX_PARAM]
            if run.data.params.get(k) != v:
                diffs.append(f"{where}: param {k}: config {v!r}, store {run.data.params.get(k)!r}")
        if "config.json" not in _all_artifacts(artifact_repo(study.uri, run.info.artifact_uri)):
            diffs.append(f"{where}: artifact config.json missing")
    for tag in ("passprune.git_commit", "passprune.config_hash", "passprune.version.torch", "passprune.device"):
        if study.config and tag not in run.data.tags:
            diffs.append(f"{where}: provenance tag {tag} missing")
    return diffs


__all__ = ["job_dirs", "job_records", "open_study", "sync_study", "verify_study", "LOG", "PLOT"]
