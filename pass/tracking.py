"""MLflow mirror of the result files: one experiment and one study run per study, one run per job under it.

Files stay the truth. Every call a *job* makes here is best-effort: a tracking failure prints one warning,
switches tracking off for the rest of that job (so a dead server costs seconds, not an hour of retries) and
never fails the job or loses a result; ``passprune track-sync`` later restores what the store is missing,
and ``passprune track-verify`` proves the store holds what the files hold (``passprune.tracking_sync``).
That is possible because a job's run is a *function of its files* (:func:`job_record`): run name, tags,
parameters, metric points and artifacts are all derived from ``metrics.json`` / ``search.json`` /
``structure.json``, so the live job, the sync and the verification agree on what "complete" means.

Two races measured with many concurrent jobs (docs/mlflow.md, "Why the store is set up this way") are avoided
by design: the store, the experiment and the study run are created once before the jobs fan out
(``init_study``, from Snakemake's ``onstart``), and jobs start runs by experiment *id*.

Artifacts live under the study's results, by a relative layout: each study's experiment has the artifact
location ``mlflow-artifacts:/<study>/mlflow``, which is a path *relative to an artifact destination*, never
an absolute path. With a SQLite store the destination is the folder that holds the database (so
``results/<study>/mlflow/<run_id>/artifacts/``), and jobs write there directly. Moving the results
folder moves the database and the artifacts together, and nothing in the store names the old place. With a
tracking server artifacts are uploaded through it into its ``--artifacts-destination``, and the experiment keeps
the server's own location (``mlflow-artifacts:/<experiment id>``): MLflow's authentication judges each artifact
request by the experiment id its path starts with, so a study-named path would be writable by the admin only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .files import atomic_write_json, git_state, package_version, read_json
from .settings import TrackingSettings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow's HTTP client retries 7 times with exponential back-off by default (minutes against a dead server,
# per call). A job gives up quickly instead; track-sync restores the runs afterwards.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in job logs

DEFAULT_URI = "sqlite:///results/mlflow.db"
#: Sub-folder of a study's results that holds its MLflow artifacts: results/<study>/mlflow/<run_id>/artifacts.
ARTIFACT_DIR = "mlflow"
#: Written by the workflow's onstart next to the state file: the resolved config and the dense-model folders.
STUDY_FILE = "study.json"
#: Tag a run gets once it holds everything its files say (digest of that content); track-sync skips such runs.
DIGEST_TAG = "passprune.files_digest"
PLOT = "kept_ratio.png"
LOG = "job.log"
MAX_PARAM = 6000  # MLflow's limit on a parameter value
#: A fine-tuning budget's folder in its run folder and suffix of its run name (passprune.study.budgets.BUDGET_DIR).
BUDGET_DIR = "ft-{budget}"


def _warn(what: str, err: BaseException) -> None:
    print(f"[tracking] {what} failed, results are safe in files: {type(err).__name__}: {err}", file=sys.stderr)


# ----------------------------------------------------------------------------- credentials (docs/mlflow.md)
#: MLflow itself reads MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or ~/.mlflow/credentials); the
#: password may instead sit in the file this variable names, readable only by its owner.
PASSWORD_FILE_VAR = "MLFLOW_TRACKING_PASSWORD_FILE"
_CRED_VARS = f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or {PASSWORD_FILE_VAR}, a chmod-600 file)"


class AuthError(ValueError):
    """Credentials in the wrong place (a password in a URI, a password file others can read) or refused by the
    server (401/403); the message says what to set."""


def _owner_only(path: Path, name: str) -> None:
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise AuthError(
            f"{name}={path} must be yours and readable only by you (mode {st.st_mode & 0o777:o}): chmod 600 {path}"
        )


def check_uri(uri: str) -> None:
    """Refuse a tracking URI that holds a password: it would show in the process list (``track-init --uri``) and
    be written to the study's state file."""
    parts = urlparse(uri)
    if parts.password is None:
        return
    shown = uri.replace(f":{parts.password}@", ":***@", 1)
    fix = (
        f"set {_CRED_VARS}" if is_http(uri) else "put the password in ~/.pgpass or the chmod-600 file PGPASSFILE names"
    )
    raise AuthError(
        f"the tracking URI {shown} holds a password, visible in the process list and the study's state file: "
        f"remove it and {fix}"
    )


def load_credentials() -> None:
    """The password from the file ``MLFLOW_TRACKING_PASSWORD_FILE`` names, unless MLFLOW_TRACKING_PASSWORD is set
    (MLflow reads the variable); that file, and MLflow's ~/.mlflow/credentials, must be readable only by you."""
    name = os.environ.get(PASSWORD_FILE_VAR)
    if name and not os.environ.get("MLFLOW_TRACKING_PASSWORD"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise AuthError(f"{PASSWORD_FILE_VAR}={name}: no such file")
        _owner_only(path, PASSWORD_FILE_VAR)
        lines = path.read_text().splitlines()
        if not lines or not lines[0].strip():
            raise AuthError(f"{PASSWORD_FILE_VAR}={name} is empty: its first line is the password")
        os.environ["MLFLOW_TRACKING_PASSWORD"] = lines[0].strip()
    mlflow_file = Path("~/.mlflow/credentials").expanduser()
    if mlflow_file.is_file():
        _owner_only(mlflow_file, "MLflow's credentials file")


def auth_problem(uri: str, err: BaseException) -> str | None:
    """One line naming what to set when ``err`` is the server refusing us (401/403) or misplaced credentials;
    ``None`` for any other error."""
    if isinstance(err, AuthError):
        return str(err)
    code = getattr(err, "get_http_status_code", lambda: None)()
    if code is None:
        code = getattr(getattr(err, "response", None), "status_code", None)
    if code == 401:
        return f"the MLflow server {uri} did not accept the credentials (401 Unauthorized): set {_CRED_VARS}"
    if code == 403:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        return (
            f"the MLflow server {uri} refused user {user!r} (403 Forbidden: no permission on this study's "
            "experiment): ask the server's admin for EDIT on it, or set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to the account that created it"
        )
    return None


# ----------------------------------------------------------------------------- where things are
def tracking_uri(settings: TrackingSettings | dict | None = None) -> str | None:
    """``None`` disables tracking. Env var MLFLOW_TRACKING_URI wins over the config."""
    settings = TrackingSettings.of(settings)
    if not settings.enabled:
        return None
    return os.environ.get("MLFLOW_TRACKING_URI") or settings.uri or DEFAULT_URI


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def experiment_name(experiment: str, study: str) -> str:
    """One experiment per study (``<tracking.experiment>/<study>``): its artifact root is the study's folder."""
    return f"{experiment}/{study}"


def artifact_location(study: str, uri: str = "") -> str | None:
    """Relative to the artifact destination (the SQLite file's folder). ``None`` for a tracking server: its own
    ``mlflow-artifacts:/<experiment id>``, the layout MLflow's authentication checks permissions by."""
    return None if is_http(uri) else f"mlflow-artifacts:/{study}/{ARTIFACT_DIR}"


def local_artifact_destination(uri: str) -> Path:
    """Where ``mlflow-artifacts:/`` points when jobs write the store directly: the SQLite file's folder
    (``results/`` for the default store), else ``results/`` under the working directory."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent
    return Path("results")


def artifact_repo(uri: str, artifact_uri: str):
    """The artifact repository of a run: local files under the destination for a direct store, MLflow's
    proxied upload for a server, MLflow's own repository for older (absolute) locations."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    if artifact_uri.startswith("mlflow-artifacts:") and not is_http(uri):
        rel = urlparse(artifact_uri).path.lstrip("/")
        return LocalArtifactRepository(str(local_artifact_destination(uri) / rel))
    return get_artifact_repository(artifact_uri, tracking_uri=uri if is_http(uri) else None)


def client_for(uri: str):
    """An MLflow client of ``uri``. A relative SQLite path is made absolute against the current directory first:
    MLflow caches one store per URI string for the life of the process, so ``sqlite:///results/mlflow.db``
    opened in one directory would otherwise keep answering from that directory's file after a chdir.
    A URI holding a password is refused; a server's credentials come from the environment (:func:`load_credentials`)."""
    from mlflow.tracking import MlflowClient

    check_uri(uri)
    if is_http(uri):
        load_credentials()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{Path(uri[len('sqlite:///') :]).resolve()}"
    return MlflowClient(uri)


# ----------------------------------------------------------------------------- the study run
def study_info(state_file: str | Path) -> dict[str, Any]:
    """The workflow's study file next to the state file (resolved config, dense folders, repository), or {}."""
    path = Path(state_file).with_name(STUDY_FILE)
    return read_json(path) if path.is_file() else {}


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def provenance_tags(info: dict[str, Any]) -> dict[str, str]:
    """Tags that tell two studies apart: git commit and dirty flag of the workflow's repository, config hash,
    library versions and the device the config asks for (and what it resolves to here)."""
    tags: dict[str, str] = {}
    state = git_state(info.get("repo"), timeout=10)
    if state is not None:
        tags["passprune.git_commit"] = state[0]
        tags["passprune.git_dirty"] = str(state[1]).lower()
    tags.setdefault("passprune.git_commit", "unknown")
    for pkg in ("passprune", "torch", "torchvision", "torch-pruning", "snakemake", "mlflow"):
        tags[f"passprune.version.{pkg}"] = package_version(pkg)
    config = info.get("config") or {}
    if config:
        tags["passprune.config_hash"] = config_hash(config)
    wanted = str(config.get("device", "auto"))
    tags["passprune.device"] = wanted
    try:
        import torch

        cuda = torch.cuda.is_available()
        tags["passprune.device_resolved"] = (
            (f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} visible)")
            if cuda and wanted != "cpu"
            else "cpu"
        )
    except Exception as err:  # noqa: BLE001  (provenance must not stop the study)
        tags["passprune.device_resolved"] = f"unknown ({type(err).__name__})"
    return tags


def _run_exists(client, run_id: str) -> bool:
    try:
        client.get_run(run_id)
        return True
    except Exception:  # noqa: BLE001  (MlflowException RESOURCE_DOES_NOT_EXIST, or a wiped store)
        return False


def init_study(
    uri: str,
    experiment: str,
    study: str,
    state_file: str | Path,
    tags: dict | None = None,
    config: dict | None = None,
    reopen: bool = True,
) -> dict:
    """:func:`_init_study`; a server refusing us (401/403) raises :class:`AuthError` saying what to set."""
    try:
        return _init_study(uri, experiment, study, state_file, tags, config, reopen)
    except Exception as err:
        problem = auth_problem(uri, err)
        if problem and not isinstance(err, AuthError):
            raise AuthError(problem) from err
        raise


def _init_study(
    uri: str,
    experiment: str,
    study: str,
    state_file: str | Path,
    tags: dict | None = None,
    config: dict | None = None,
    reopen: bool = True,
) -> dict:
    """Create the store, the study's experiment (artifact root under the study's results) and one study run
    holding the resolved config as parameters, as ``config.json`` and provenance tags; remember their ids in
    ``state_file``.

    The config comes from ``config`` or from the study file the workflow writes next to ``state_file``
    (``study.json``). Idempotent: a later call with the same store and config reuses the recorded study run
    (and, with ``reopen``, marks it RUNNING again); a changed config, or a store that lost the run, gets a new
    study run, because MLflow parameters cannot change.
    """
    from mlflow.entities import Param

    client = client_for(uri)
    name = experiment_name(experiment, study)
    exp = client.get_experiment_by_name(name)
    exp_id = (
        exp.experiment_id if exp else client.create_experiment(name, artifact_location=artifact_location(study, uri))
    )
    state_file = Path(state_file)
    info = study_info(state_file)
    if config is not None:
        info = {**info, "config": config}
    chash = config_hash(info["config"]) if info.get("config") else None
    if state_file.exists():
        state = read_json(state_file)
        if (
            state.get("experiment_id") == exp_id
            and state.get("uri") == uri
            and state.get("config_hash") == chash
            and _run_exists(client, state["parent_run_id"])
        ):
            if reopen:
                client.update_run(state["parent_run_id"], status="RUNNING")  # a new workflow run of the same study
            return state
    run_tags = {"passprune.study": study, "passprune.stage": "study", **provenance_tags(info), **(tags or {})}
    run = client.create_run(exp_id, run_name=study, tags=run_tags)
    rid = run.info.run_id
    if info.get("config"):
        params = [Param(k, str(v)[:MAX_PARAM]) for k, v in flatten(info["config"]).items()]
        client.log_batch(rid, params=params)
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "config.json").write_text(json.dumps(info["config"], indent=2, sort_keys=True) + "\n")
            artifact_repo(uri, run.info.artifact_uri).log_artifact(str(Path(tmp, "config.json")))
    state = {"uri": uri, "experiment_id": exp_id, "parent_run_id": rid, "study": study, "config_hash": chash}
    atomic_write_json(state_file, state)
    return state


def close_study(state_file: str | Path, status: str) -> None:
    """Mark the study run FINISHED or FAILED when the workflow ends (Snakemake onsuccess / onerror)."""
    state = read_json(state_file)
    client_for(state["uri"]).set_terminated(state["parent_run_id"], status)


# ----------------------------------------------------------------------------- what a job's run holds
@dataclass
class JobRecord:
    """Everything a job's MLflow run should hold, derived from the job's files only."""

    out_dir: Path
    stage: str
    name: str
    tags: dict[str, str]
    params: dict[str, str]
    points: dict[str, set[tuple[int, Any]]]  # metric key -> {(step, value)}; value canonical (NaN -> "nan")
    files: dict[str, Path]  # artifact name -> local file whose bytes the artifact must equal
    present: dict[str, Path | None]  # artifact name -> source (None: generated), only its presence is checked
    plot: tuple[dict[str, int], dict[str, int], list[str]] | None = None  # kept, sizes, group order
    end_ms: int = 0
    wall_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_points(self) -> int:
        return sum(len(v) for v in self.points.values())

    def digest(self) -> str:
        h = hashlib.sha256()
        h.update(
            json.dumps(
                [
                    self.name,
                    self.tags,
                    self.params,
                    {k: sorted(map(repr, v)) for k, v in sorted(self.points.items())},
                    sorted(self.present),
                ],
                sort_keys=True,
            ).encode()
        )
        for name, path in sorted(self.files.items()):
            h.update(name.encode() + file_sha256(path).encode())
        return h.hexdigest()[:24]


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canon(value: Any) -> Any:
    """A metric value as compared: a float, NaN as the string "nan" (NaN != NaN)."""
    v = float(value)
    return "nan" if math.isnan(v) else v


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _add(points: dict, key: str, step: int, value: Any) -> None:
    points.setdefault(key, set()).add((int(step), canon(value)))


def _history(points: dict, records: Iterable[dict] | None, step_key: str, prefix: str = "", keep_step: bool = True):
    for rec in records or []:
        if not isinstance(rec, dict) or not _numeric(rec.get(step_key)):
            continue
        for k, v in rec.items():
            if _numeric(v) and (keep_step or k != step_key):
                _add(points, f"{prefix}{k}", rec[step_key], v)


def finetune_run_name(dataset: str, arch: str, seed: Any, method: str, target: Any, budget: str | None = None) -> str:
    """A fine-tuning job's run name: ``{dataset}/{arch}/seed{seed}/{method}/macs{target}``, with ``/ft-{budget}``
    after it in a study that lists fine-tuning budgets (each budget's run of one structure has its own name)."""
    name = f"{dataset}/{arch}/seed{seed}/{method}/macs{target}"
    return name if budget is None else f"{name}/{BUDGET_DIR.format(budget=budget)}"


def budget_name(metrics: dict[str, Any]) -> str | None:
    """The fine-tuning budget a run's ``metrics.json`` records (its settings' ``budget.name``), or None."""
    settings = metrics.get("settings") if isinstance(metrics.get("settings"), dict) else {}
    info = settings.get("budget")
    return info.get("name") if isinstance(info, dict) else None


def job_log_candidates(out_dir: Path) -> list[Path]:
    """Where the workflow's rules send a job's stdout+stderr (workflow/rules/*.smk ``log:``), from its folder.

    dense:    results/_dense/{d}/{a}/seed{s}/{id}/pretrain.log
    search:   results/{study}/logs/search/{d}/{a}/seed{s}/{m}/macs{t}.log (transfer searches: logs/transfer/
              .../{kind}-{m}-from-{src}/macs{t}.log)
    finetune: results/{study}/logs/finetune/{d}/{a}/seed{s}/{m}/macs{t}.log (structure transfer: logs/transfer/
              .../structure-{m}-from-{src}/macs{t}.log); a budget's fine-tuning (``.../macs{t}/ft-{b}``):
              .../macs{t}/ft-{b}.log
    """
    out = Path(out_dir)
    if (out / "pretrain.log").exists() or "_dense" in out.parts:
        return [out / "pretrain.log"]
    budget = out.name if out.name.startswith(BUDGET_DIR.format(budget="")) else None
    run = out.parent if out.name == "search" or budget else out
    try:
        macs, method, seed, arch, dataset, study_dir = (
            run.name,
            run.parent.name,
            run.parent.parent.name,
            run.parents[2].name,
            run.parents[3].name,
            run.parents[4],
        )
    except IndexError:
        return []
    rel = Path(dataset, arch, seed)
    stage = "search" if out.name == "search" else "finetune"
    leaf = f"{macs}/{budget}.log" if budget else f"{macs}.log"
    cands = [study_dir / "logs" / stage / rel / method / leaf]
    if method.startswith("xfer_"):
        cands.insert(0, study_dir / "logs" / "transfer" / rel / method[len("xfer_") :] / leaf)
    return cands


def _seed_from_path(out: Path) -> int | None:
    for part in reversed(out.parts):
        m = re.fullmatch(r"seed(\d+)", part)
        if m:
            return int(m.group(1))
    return None


@dataclass
class _JobFiles:
    """What one finished job's result files say, before :func:`job_record` adds the step-0 points and the log."""

    stage: str
    name: str
    tags: dict[str, Any]
    params: dict[str, Any]
    final: dict[str, Any]  # numeric top-level values, logged at step 0
    files: dict[str, Path]
    end_path: Path  # the file whose mtime is the run's end time
    wall: Any
    plot: tuple[dict[str, int], dict[str, int], list[str]] | None = None


def job_record(out_dir: str | Path, log_models: bool = False, log_file: str | Path | None = None) -> JobRecord | None:
    """What the run of the job that wrote ``out_dir`` must hold, or None if the folder holds no finished job.

    Run names and tags are those the stages give (``passprune.cli``: ``{dataset}/{arch}/seed{seed}/dense``,
    ``.../{method}/macs{target}`` (``.../ft-{budget}`` after it, and a ``budget`` tag, in a study that lists
    fine-tuning budgets: :func:`finetune_run_name`) and ``.../search``); metric points are the numeric top-level
    values at step 0 and the per-epoch (per-step for PASS's search) histories; artifacts are the JSON files
    (compared byte for byte), the kept-ratio plot, the job's log and, with ``log_models``, model.pt (present when
    logged).
    """
    out = Path(out_dir)
    points: dict[str, set] = {}
    present: dict[str, Path | None] = {}
    if out.name == "search" and (out / "search.json").is_file() and (out / "structure.json").is_file():
        job = _search_files(out, points)
    elif (out / "metrics.json").is_file():
        job = _metrics_files(out, points, present, log_models)
    else:
        return None
    if job is None:
        return None
    for k, v in job.final.items():
        _add(points, k, 0, v)
    if job.plot is not None:
        present[PLOT] = None
    log = Path(log_file) if log_file else next((p for p in job_log_candidates(out) if p.is_file()), None)
    if log is not None and log.is_file():
        present[LOG] = log
    return JobRecord(
        out_dir=out,
        stage=job.stage,
        name=job.name,
        tags={k: str(v) for k, v in job.tags.items() if v is not None},
        params={k: str(v)[:MAX_PARAM] for k, v in job.params.items()},
        points=points,
        files=job.files,
        present=present,
        plot=job.plot,
        end_ms=int(job.end_path.stat().st_mtime * 1000),
        wall_seconds=job.wall if _numeric(job.wall) else None,
    )


def _search_files(out: Path, points: dict[str, set]) -> _JobFiles | None:
    """A search folder's record parts (``search.json`` + ``structure.json``), its histories added to ``points``.
    The seed comes from the path because the search files do not store it; no seed folder, no record."""
    search, structure = read_json(out / "search.json"), read_json(out / "structure.json")
    seed = _seed_from_path(out)
    if seed is None:
        return None
    tags = {
        "stage": "search",
        "dataset": structure["dataset"],
        "arch": structure["arch"],
        "seed": seed,
        "method": search["method"],
        "base_method": search.get("base_method"),
        "target": search["target"],
        "family": search.get("family"),
    }
    final = {k: v for k, v in search.items() if _numeric(v)}
    final.update({k: v for k, v in (search.get("info") or {}).items() if _numeric(v)})
    info = search.get("info") or {}
    _history(points, info.get("history"), "step", keep_step=False)
    _history(points, info.get("sparsity_history"), "epoch", prefix="sparsity_", keep_step=False)
    kept = {g: len(v) for g, v in structure["kept"].items()}
    return _JobFiles(
        stage="search",
        name=f"{structure['dataset']}/{structure['arch']}/seed{seed}/{search['method']}/macs{search['target']}/search",
        tags=tags,
        params=flatten({"options": search.get("options") or {}, **(search.get("settings") or {})}),
        final=final,
        files={"search.json": out / "search.json", "structure.json": out / "structure.json"},
        end_path=out / "search.json",
        wall=search.get("job_seconds"),
        plot=(kept, structure.get("group_sizes") or {}, _natural(kept)),
    )


def _metrics_files(
    out: Path, points: dict[str, set], present: dict[str, Path | None], log_models: bool
) -> _JobFiles | None:
    """A pretrain or finetune folder's record parts (``metrics.json``), its histories added to ``points`` and,
    with ``log_models``, model.pt to ``present``; a metrics.json of another stage is no job of these."""
    metrics = read_json(out / "metrics.json")
    stage = metrics.get("stage")
    if stage not in ("pretrain", "finetune"):
        return None
    base = f"{metrics['dataset']}/{metrics['arch']}/seed{metrics['seed']}"
    tags = {
        "stage": stage,
        "dataset": metrics["dataset"],
        "arch": metrics["arch"],
        "seed": metrics["seed"],
        "method": metrics.get("method"),
    }
    if stage == "pretrain":
        name = f"{base}/dense"
    else:
        budget = budget_name(metrics)
        name = finetune_run_name(
            metrics["dataset"], metrics["arch"], metrics["seed"], metrics["method"], metrics["target"], budget
        )
        tags.update(target=metrics["target"], family=metrics.get("family"), source=metrics.get("source"), budget=budget)
    _history(points, metrics.get("history"), "epoch")
    _history(points, metrics.get("scratch_history"), "epoch", prefix="scratch_", keep_step=False)
    plot = None
    if metrics.get("kept_channels") and metrics.get("group_sizes"):
        order = metrics.get("group_order") or _natural(metrics["kept_channels"])
        plot = (metrics["kept_channels"], metrics["group_sizes"], order)
    if log_models and (out / "model.pt").is_file():
        present["model.pt"] = out / "model.pt"
    return _JobFiles(
        stage=stage,
        name=name,
        tags=tags,
        params=flatten(metrics.get("settings") or {}),
        final={k: v for k, v in metrics.items() if _numeric(v)},
        files={"metrics.json": out / "metrics.json"},
        end_path=out / "metrics.json",
        wall=metrics.get("wall_seconds"),
        plot=plot,
    )


def _natural(names: Iterable[str]) -> list[str]:
    return sorted(names, key=lambda s: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(s))])


def kept_ratio_plot(kept: dict[str, int], sizes: dict[str, int], order: list[str], path: Path, title: str) -> Path:
    """A small bar chart of the fraction of channels each dependency group keeps (the structure at a glance)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in order if g in kept and sizes.get(g)]
    ratios = [kept[g] / sizes[g] for g in groups]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.22 * len(groups) + 1.5), 2.6), dpi=100)
    ax.bar(range(len(groups)), ratios, color="#4c72b0")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("kept fraction")
    ax.set_xlabel("dependency group (network order)")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([str(g) for g in groups], rotation=90, fontsize=5)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- bringing a run up to its files
class Conflict(Exception):
    """The run already holds a parameter or metric point that the files contradict (an older attempt)."""


def _all_artifacts(repo, path: str = "") -> dict[str, Any]:
    out = {}
    for f in repo.list_artifacts(path or None):
        if f.is_dir:
            out.update(_all_artifacts(repo, f.path))
        else:
            out[f.path] = f
    return out


def complete_run(uri: str, run_id: str, record: JobRecord, *, terminate: bool = True, client=None) -> dict[str, int]:
    """Log into ``run_id`` whatever ``record`` has that the run lacks: parameters, tags, metric points,
    artifacts; then tag it with the record's digest and (``terminate``) mark it FINISHED. Adds nothing that is
    already there, so it is idempotent; raises :class:`Conflict` if the run contradicts the files.
    Returns counts of what was added."""
    from mlflow.entities import Metric, Param, RunTag

    client = client or client_for(uri)
    run = client.get_run(run_id)
    have_params = run.data.params
    bad = {k: (have_params[k], v) for k, v in record.params.items() if k in have_params and have_params[k] != v}
    if bad:
        raise Conflict(f"parameters differ from the files: {dict(list(bad.items())[:3])}")
    params = [Param(k, v) for k, v in record.params.items() if k not in have_params]
    tags = [RunTag(k, v) for k, v in record.tags.items() if run.data.tags.get(k) != v]
    latest = {m.key: m for m in getattr(run.data, "_metric_objs", [])}  # the latest point of each key, with its step
    ts = record.end_ms
    metrics = []
    for key, want in record.points.items():
        if key not in run.data.metrics:
            have: set = set()
        elif len(want) == 1 and key in latest and (latest[key].step, canon(latest[key].value)) == next(iter(want)):
            continue  # the one expected point is the latest one: present
        else:
            have = {(m.step, canon(m.value)) for m in client.get_metric_history(run_id, key)}
            clash = {s for s, _ in have} & {s for s, _ in want - have}
            if clash:
                raise Conflict(f"metric {key!r} has other values at step(s) {sorted(clash)[:5]}")
        metrics += [Metric(key, float(v), ts, s) for s, v in sorted(want - have, key=repr)]
    if params or tags or metrics:
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    repo = artifact_repo(uri, run.info.artifact_uri)
    have_art = _all_artifacts(repo)
    n_art = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in record.files.items():
            if name not in have_art or have_art[name].file_size != path.stat().st_size:
                repo.log_artifact(str(path))
                n_art += 1
        for name, src in record.present.items():
            if name in have_art:
                continue
            if name == PLOT and record.plot is not None:
                src = kept_ratio_plot(*record.plot, Path(tmp) / PLOT, record.name)
            if src is None:
                continue
            if src.name != name:  # e.g. a Snakemake log macs0.3.log -> job.log
                staged = Path(tmp) / name
                staged.write_bytes(Path(src).read_bytes())
                src = staged
            repo.log_artifact(str(src))
            n_art += 1
    client.set_tag(run_id, DIGEST_TAG, record.digest())
    if terminate and run.info.status != "FINISHED":
        client.set_terminated(run_id, "FINISHED", end_time=record.end_ms)
    return {"params": len(params), "tags": len(tags), "points": len(metrics), "artifacts": n_art}


# ----------------------------------------------------------------------------- a job's run
_OFF_TEXT = "MLflow is off for the rest of this job; `passprune track-sync` restores the run from the files"
_OFF = f"[tracking] {_OFF_TEXT}"


class JobRun:
    """Context manager around one job's MLflow run; every method swallows and reports tracking errors.

    After the first tracking error the run is switched off for the rest of the job: one warning, no more
    waiting on a store that is down. ``log_outputs(out_dir)``, called once at the end of a job, logs what the
    job's files say the run holds (final metrics, JSON files, kept-ratio plot, log, model with
    ``tracking.log_models``), filling in any epoch that was not logged live.
    """

    def __init__(
        self, settings: TrackingSettings | dict | None, run_name: str, tags: dict[str, Any], params: dict[str, Any]
    ) -> None:
        self.run = None
        self.client = None
        self.settings = TrackingSettings.of(settings)
        self.run_name = run_name
        self.uri = tracking_uri(self.settings)
        if self.uri is None or not self.settings.live:
            # live: false -- the job only writes its files; `passprune track-sync` mirrors them when the workflow
            # ends (no mlflow import, no store round-trips: seconds per job on a small machine)
            return
        try:
            state_file = self.settings.state_file
            state = read_json(state_file) if Path(state_file).exists() else None
            self.client = client_for(self.uri)
            if state and state.get("uri") == self.uri:
                exp_id = state["experiment_id"]
                tags = {**tags, "mlflow.parentRunId": state["parent_run_id"]}
            else:  # run outside Snakemake: create (or find) the experiment here
                name = self.settings.experiment
                exp = self.client.get_experiment_by_name(name)
                exp_id = exp.experiment_id if exp else self.client.create_experiment(name)
            self.run = self.client.create_run(exp_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
            self.log_params(params)
        except Exception as err:  # noqa: BLE001  (tracking is best-effort by contract)
            self._off("starting the MLflow run", err)

    @property
    def run_id(self) -> str | None:
        return self.run.info.run_id if self.run is not None else None

    def _call(self, what: str, fn, *args, **kwargs) -> None:
        if self.run is None:
            return
        try:
            fn(self.run.info.run_id, *args, **kwargs)
        except Exception as err:  # noqa: BLE001
            self._off(what, err)

    def _off(self, what: str, err: BaseException) -> None:
        """Report a tracking failure (a refused login or missing permission as one line saying what to set)
        and switch tracking off for the rest of the job."""
        problem = auth_problem(self.uri or "", err)
        if problem:
            print(f"[tracking] {what}: {problem}; results are safe in files. {_OFF_TEXT}", file=sys.stderr)
        else:
            _warn(what, err)
            print(_OFF, file=sys.stderr)
        self.run = None

    def log_params(self, params: dict[str, Any]) -> None:
        if self.run is None:  # tracking off or broken: do not even import mlflow (seconds per job)
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM]) for k, v in flatten(params).items()]
        self._call("logging params", lambda rid: self.client.log_batch(rid, params=items))

    def log_metrics(self, metrics: dict[str, Any], step: int = 0) -> None:
        if self.run is None:
            return
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items() if _numeric(v)]
        self._call("logging metrics", lambda rid: self.client.log_batch(rid, metrics=items))

    def log_artifact(self, path: str | Path) -> None:
        self._call(
            "logging an artifact",
            lambda rid: artifact_repo(self.uri, self.run.info.artifact_uri).log_artifact(str(path)),
        )

    def log_outputs(self, out_dir: str | Path) -> None:
        """Log what the job's files in ``out_dir`` say its run holds (see :func:`job_record`). The job's log
        is the file its stdout goes to (Snakemake's ``> {log} 2>&1``), found through /proc/self/fd/1."""
        if self.run is None:
            return
        log = _stdout_file()
        record = job_record(out_dir, log_models=self.settings.log_models, log_file=log)
        if record is None:
            print(f"[tracking] {out_dir} holds no finished job's files; nothing logged", file=sys.stderr)
            return
        if record.name != self.run_name:
            print(
                f"[tracking] run {self.run_name!r} logs the files of {record.name!r} (their names differ: "
                "track-verify will report it)",
                file=sys.stderr,
            )
        self._call(
            "logging the job's outputs",
            lambda rid: complete_run(self.uri, rid, record, terminate=False, client=self.client),
        )

    def __enter__(self) -> JobRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        status = "FINISHED" if exc_type is None else "FAILED"
        self._call("closing the run", lambda rid: self.client.set_terminated(rid, status))


def _stdout_file() -> Path | None:
    """The regular file this process's stdout is redirected to, if any (Linux)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    try:
        target = Path(os.readlink("/proc/self/fd/1"))
    except OSError:
        return None
    return target if target.is_file() else None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


_flatten = flatten  # the old private name
