"""A config's jobs, for the tools that look at a study before it is submitted (``passprune estimate``, ``prefetch``).

Why from :mod:`passprune.study` and not from a Snakemake dry run: the study module is what the rules themselves
call for every job's settings, folders and targets, so the tools see the jobs the cluster will run, with the
settings it will hand them, in well under a second and without parsing Snakemake's console output.
``tests/test_config.py`` checks that Snakemake plans exactly these jobs. Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .study import Job, StudyError, counts, jobs, load, still_to_run

__all__ = ["Plan", "PlannedJob", "StudyError", "plan"]

#: One job that runs a model (a ``passprune pretrain/search/finetune`` call), with its resolved settings.
PlannedJob = Job


@dataclass
class Plan:
    """Jobs per rule (``counts``, ordered as Snakemake's "Job stats" table) and the jobs that run a model
    (``jobs``; the summary, report and ``all`` jobs are counted but not listed)."""

    configfile: str
    counts: dict[str, int]
    jobs: list[Job] = field(default_factory=list)

    def by_rule(self) -> dict[str, list[Job]]:
        out: dict[str, list[Job]] = {}
        for j in self.jobs:
            out.setdefault(j.rule, []).append(j)
        return out


def plan(configfile: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None) -> Plan:
    """Every job of ``configfile`` (None: the embedded default, config/config.yaml); with ``workdir``, only those
    a run there would still do (see :func:`passprune.study.still_to_run`). Raises
    :class:`passprune.study.StudyError` listing every problem of an invalid config."""
    all_jobs = jobs(load(Path(configfile) if configfile else None))
    if workdir is not None:
        all_jobs = still_to_run(all_jobs, workdir)
    return Plan(str(configfile or "config/config.yaml"), counts(all_jobs), [j for j in all_jobs if j.stage])
