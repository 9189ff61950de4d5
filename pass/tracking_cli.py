"""``passprune track-sync`` and ``passprune track-verify``: the MLflow store brought up to, and checked
against, a study's result files (``passprune.tracking_sync``).

Registered by ``passprune.cli`` through ``COMMAND_MODULES``. Both take the study folder
(``results/<study>``); the store is ``--uri``, else ``MLFLOW_TRACKING_URI``, else the study's config.
The workflow's ``onsuccess``/``onerror`` runs ``track-sync --close STATUS``; ``track-verify`` is the audit
a lab runs before trusting (or publishing) a study's store: it exits 1 on any difference. ``track-urls`` prints
the direct link to each study's runs table (``scripts/mlflow-ui.sh`` and ``scripts/run.sh`` call it). Against a
server with authentication, a refused login (401) or write (403) ends in one line naming the variables to set.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .files import read_json


def _open(a: argparse.Namespace):
    from .tracking_sync import open_study

    return open_study(a.study_dir, uri=a.uri, create=True)


def _refused(a: argparse.Namespace, err: Exception) -> None:
    """A server that refused us (401/403) or misplaced credentials: one line saying what to set, then exit."""
    from .tracking import auth_problem

    problem = auth_problem(a.uri or os.environ.get("MLFLOW_TRACKING_URI") or "(the study's store)", err)
    if problem:
        intact = "" if a.stage == "track-urls" else "; the result files are intact"
        raise SystemExit(f"passprune {a.stage}: {problem}{intact}") from None


def cmd_track_sync(a: argparse.Namespace) -> None:
    from .tracking import close_study
    from .tracking_sync import STATE_NAME, sync_study

    try:
        study = _open(a)
        sync_study(study, [Path(d) for d in a.dense])
        if a.close:
            close_study(Path(a.study_dir) / STATE_NAME, a.close)
    except Exception as err:  # noqa: BLE001  (a store that is down: say so, and how to retry)
        _refused(a, err)
        if isinstance(err, (FileNotFoundError, ValueError)):
            raise
        raise SystemExit(
            f"passprune track-sync: the MLflow store could not be reached or written "
            f"({type(err).__name__}: {str(err)[:300]}); the result files are intact: rerun "
            f"`passprune track-sync {a.study_dir}` once the store is back"
        ) from None


def cmd_track_verify(a: argparse.Namespace) -> None:
    from .tracking_sync import verify_study

    try:
        diffs = verify_study(_open(a), [Path(d) for d in a.dense])
    except Exception as err:  # noqa: BLE001
        _refused(a, err)
        raise
    if diffs:
        print(
            f"passprune track-verify: {len(diffs)} differences between the store and the files; "
            f"`passprune track-sync {a.study_dir}` logs what the store is missing",
            file=sys.stderr,
        )
        raise SystemExit(1)


def _store_of(a: argparse.Namespace) -> str | None:
    """The store ``track-urls`` reads: --uri, else MLFLOW_TRACKING_URI, else the first study's (state, config)."""
    from .tracking import DEFAULT_URI, study_info
    from .tracking_sync import STATE_NAME

    uri = a.uri or os.environ.get("MLFLOW_TRACKING_URI")
    for d in a.study_dir[:1] if not uri else []:
        state = Path(d) / STATE_NAME
        tracking = (study_info(state).get("config") or {}).get("tracking") or {}
        uri = (read_json(state).get("uri") if state.is_file() else None) or tracking.get("uri") or DEFAULT_URI
    return uri


def cmd_track_urls(a: argparse.Namespace) -> None:
    """Print the direct link to each study's runs table (the UI's training view): every experiment of the store,
    or those of the study folders given. A SQLite store that does not exist is not created. A study whose state
    file records its experiment in this very store is answered from that file (written when the experiment was
    created or checked): run.sh's closing link then costs no mlflow start-up (about 4 s on 2 cores)."""
    from .tracking import client_for, experiment_name, is_http, study_info
    from .tracking_sync import STATE_NAME

    uri = _store_of(a)
    if uri is None or (uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file()):
        print(f"passprune track-urls: no MLflow store at {uri} yet (run a study first)", file=sys.stderr)
        return
    base = (a.base or (uri if is_http(uri) else "http://127.0.0.1:5000")).rstrip("/")
    known: dict[str, str | None] = {}  # experiment name -> its id, when the study's state file says so
    for d in a.study_dir:
        state_file = Path(d) / STATE_NAME
        info = study_info(state_file)
        tracking = (info.get("config") or {}).get("tracking") or {}
        if tracking.get("enabled", True):
            name = experiment_name(tracking.get("experiment", "passprune"), info.get("study", Path(d).name))
            state = read_json(state_file) if state_file.is_file() else {}
            known[name] = state.get("experiment_id") if state.get("uri") == uri else None
    if a.study_dir and all(known.values()):
        found = list(known.items())
    else:
        try:
            client = client_for(uri)
            if a.study_dir:
                exps = [e for e in map(client.get_experiment_by_name, known) if e is not None]
            else:
                exps = sorted((e for e in client.search_experiments() if e.name != "Default"), key=lambda e: e.name)
        except Exception as err:  # noqa: BLE001
            _refused(a, err)
            raise
        found = [(e.name, e.experiment_id) for e in exps]
    for name, exp_id in found:
        print(f"  {name}: {base}/#/experiments/{exp_id}/runs")


def add_commands(sub) -> None:
    """Register ``track-sync`` and ``track-verify`` on ``passprune``'s subparsers."""
    for name, fn, help_ in (
        (
            "track-sync",
            cmd_track_sync,
            "log, idempotently, every finished job whose MLflow run is missing or incomplete",
        ),
        (
            "track-verify",
            cmd_track_verify,
            "compare the MLflow store with the result files through the API; exit 1 on any difference",
        ),
    ):
        q = sub.add_parser(name, help=help_)
        q.add_argument("study_dir", help="the study's results folder, results/<study>")
        q.add_argument(
            "--uri",
            default=None,
            help="tracking URI (default: MLFLOW_TRACKING_URI, else the study config's tracking.uri)",
        )
        q.add_argument(
            "--dense",
            action="append",
            default=[],
            metavar="DIR",
            help="more dense-model folders to include (the workflow lists the study's own in "
            "results/<study>/study.json)",
        )
        if name == "track-sync":
            q.add_argument(
                "--close",
                choices=["FINISHED", "FAILED"],
                default=None,
                help="then mark the study run FINISHED or FAILED (the workflow's onsuccess/onerror)",
            )
        q.set_defaults(fn=fn)
    q = sub.add_parser(
        "track-urls", help="print the link to each study's runs table in the MLflow UI (the training view)"
    )
    q.add_argument("study_dir", nargs="*", help="study folders (results/<study>); default: every study in the store")
    q.add_argument("--uri", default=None, help="tracking URI (default: MLFLOW_TRACKING_URI, else the study's store)")
    q.add_argument(
        "--base", default=None, help="the UI's address (default: an http store's own, else http://127.0.0.1:5000)"
    )
    q.set_defaults(fn=cmd_track_urls)
