"""Where jobs may log to MLflow while they run: never SQLite from the nodes of a cluster executor.

SQLite locks the whole file for each write and relies on POSIX locks that network filesystems (NFS, Lustre, GPFS)
implement badly or not at all: twenty jobs on twenty nodes writing ``results/mlflow.db`` lose writes, hit
"database is locked", or corrupt the file (docs/mlflow.md). Concurrent jobs on *one* machine are fine (local
locks work; tests/test_tracking.py runs 16 at once), so only cluster executors are refused. The fix is either
``tracking.live: false`` -- jobs write only their files and ``passprune track-sync`` mirrors them into the store
from the machine running Snakemake when the workflow ends -- or an MLflow server (docs/mlflow.md, "A server for
the lab"), which serialises writes itself.

The executor is known only once Snakemake executes the workflow (``Workflow.execute`` sets
``workflow.executor_plugin``); while the Snakefile is parsed it is still None. So the workflow calls
:func:`check_live_store` from its ``onstart:`` handler, with :func:`executor_name`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

#: Executors whose jobs run on the machine that runs Snakemake (``dryrun`` and ``touch`` run nothing).
LOCAL_EXECUTORS: frozenset[str] = frozenset({"local", "dryrun", "touch"})

SERVER_DOC = "docs/mlflow.md, 'A server for the lab'"


def executor_name(workflow: Any) -> str | None:
    """The executor Snakemake runs the jobs with (``"local"``, ``"slurm"``, ...): the name of
    ``workflow.executor_plugin`` (Snakemake 9). None before execution starts, i.e. while the Snakefile is parsed."""
    return getattr(getattr(workflow, "executor_plugin", None), "name", None)


def is_cluster_executor(executor: str | None) -> bool:
    """Whether jobs run on other machines than Snakemake (any executor plugin but the local ones)."""
    return executor is not None and executor not in LOCAL_EXECUTORS


def check_live_store(
    tracking: Mapping[str, Any], executor: str | None, env: Mapping[str, str] | None = None
) -> list[str]:
    """Errors (each naming the problem and the fix) when jobs of ``executor`` would log live to SQLite.

    ``tracking`` is the config's ``tracking`` section; the store is what the jobs will use: ``MLFLOW_TRACKING_URI``
    from ``env`` (default ``os.environ``) when set, else ``tracking.uri``, else the default SQLite file.
    """
    from .settings import TrackingSettings
    from .tracking import DEFAULT_URI

    settings = TrackingSettings.of(dict(tracking))
    if not (settings.enabled and settings.live and is_cluster_executor(executor)):
        return []
    env = os.environ if env is None else env
    from_env = env.get("MLFLOW_TRACKING_URI")
    uri = from_env or settings.uri or DEFAULT_URI
    if not uri.startswith("sqlite:"):
        return []
    source = "MLFLOW_TRACKING_URI" if from_env else "tracking.uri"
    return [
        f"tracking: jobs on the {executor!r} executor would log live to SQLite ({source} = {uri}); SQLite on a "
        "shared filesystem loses or locks concurrent writes from many nodes. Fix: set tracking.live: false (jobs "
        "write only their files; track-sync mirrors them into the store from this machine when the workflow "
        f"ends), or log to an MLflow server: export MLFLOW_TRACKING_URI=http://HOST:5000 ({SERVER_DOC})"
    ]
