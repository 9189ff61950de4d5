"""``passprune track-sync`` and ``passprune track-verify``: the MLflow store brought up to, and checked
against, a study's result files (``passprune.tracking_sync``).

Registered by ``passprune.cli`` through ``COMMAND_MODULES``. Both take the study folder
(``results/<study>``); the store is ``--uri``, else ``MLFLOW_TRACKING_URI``, else the study's config.
The workflow's ``onsuccess``/``onerror`` runs ``track-sync --close STATUS``; ``track-verify`` is the audit
a lab runs before trusting (or publishing) a study's store: it exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _open(a: argparse.Namespace):
    from .tracking_sync import open_study

    return open_study(a.study_dir, uri=a.uri, create=True)


def cmd_track_sync(a: argparse.Namespace) -> None:
    from .tracking import close_study
    from .tracking_sync import STATE_NAME, sync_study

    try:
        study = _open(a)
        sync_study(study, [Path(d) for d in a.dense])
    except (FileNotFoundError, ValueError):
        raise
    except Exception as err:  # noqa: BLE001  (a store that is down: say so, and how to retry)
        raise SystemExit(
            f"passprune track-sync: the MLflow store could not be reached or written "
            f"({type(err).__name__}: {str(err)[:300]}); the result files are intact: rerun "
            f"`passprune track-sync {a.study_dir}` once the store is back"
        ) from None
    if a.close:
        close_study(Path(a.study_dir) / STATE_NAME, a.close)


def cmd_track_verify(a: argparse.Namespace) -> None:
    from .tracking_sync import verify_study

    diffs = verify_study(_open(a), [Path(d) for d in a.dense])
    if diffs:
        print(
            f"passprune track-verify: {len(diffs)} differences between the store and the files; "
            f"`passprune track-sync {a.study_dir}` logs what the store is missing",
            file=sys.stderr,
        )
        raise SystemExit(1)


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
