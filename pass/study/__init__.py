"""A study config, resolved once in Python: validated, with every job's settings and the study's targets.

Why: the Snakemake rules, ``passprune estimate``, ``passprune prefetch`` and the tests all need to know what a
config means (which jobs, with which settings, writing where). Resolving it here, torch-free and without
Snakemake, gives them one answer: the rules call these functions from their input functions and params, and the
tools enumerate the same jobs (:func:`jobs`) in a fraction of a second.

    study = check(config)                      # StudyError listing every problem, before any job runs
    targets(study)                             # the files a full run ends with
    job_settings(study, "search", dataset="cifar10", method="pass")
    sparse_dir(study, "cifar10", "resnet18", 7, "slimming")   # the sparsity training its searches share
    job_settings(study, "finetune", dataset="cifar10", method="pass", budget="s468")  # budget: when listed
    jobs(study)                                # every job with its rule, wildcards, settings and outputs

Torch-free on purpose (``tests/test_config.py`` checks it): Snakemake imports it to plan a study.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .budgets import BUDGET_DIR, finetune_section, finetune_steps, ft_dir, job_budget, weight_train_steps
from .checks import semantic_errors
from .core import Study
from .jobs import SUMMARY_RULES, Job, counts, jobs, still_to_run
from .jobsettings import (
    STAGES,
    dense_dir,
    dense_id,
    job_settings,
    settings_json,
    sparse_dir,
    sparse_id,
    twin_dense_dir,
    twin_dense_id,
)
from .layout import DENSE_DIR, SPARSE_DIR, XFER, XFER_FINETUNED_KINDS, Layout, fmt_target, xfer_name
from .registry import capabilities
from .schema import REPO, SCHEMA_PATH, load_schema, validate
from .targets import (
    all_metrics,
    dense_dirs,
    figures,
    report_files,
    report_metrics,
    tables,
    targets,
    transfer_runs,
    twin_metrics,
)

__all__ = [
    "BUDGET_DIR",
    "DENSE_DIR",
    "REPO",
    "SPARSE_DIR",
    "STAGES",
    "SUMMARY_RULES",
    "XFER",
    "XFER_FINETUNED_KINDS",
    "Job",
    "Layout",
    "Study",
    "StudyError",
    "all_metrics",
    "check",
    "counts",
    "dense_dir",
    "dense_dirs",
    "dense_id",
    "figures",
    "finetune_section",
    "finetune_steps",
    "fmt_target",
    "ft_dir",
    "job_settings",
    "job_budget",
    "jobs",
    "load",
    "report_files",
    "report_metrics",
    "settings_json",
    "sparse_dir",
    "sparse_id",
    "still_to_run",
    "tables",
    "targets",
    "transfer_runs",
    "twin_dense_dir",
    "twin_dense_id",
    "twin_metrics",
    "weight_train_steps",
    "xfer_name",
]


class StudyError(ValueError):
    """An invalid config: every problem found, one per line, each naming its key and how to fix it."""


def check(config: Mapping[str, Any], repo: str | Path = REPO) -> Study:
    """Validate a config (a mapping, as Snakemake or ``yaml.safe_load`` gives it) against the schema of the
    repository ``repo``, fill the schema's defaults (in a copy), and test its cross-references. Raises
    :class:`StudyError` listing every schema violation, or else every cross-reference problem."""
    repo = Path(repo)
    resolved, errors = validate(dict(config), repo)
    if errors:
        raise StudyError(f"invalid config ({SCHEMA_PATH.as_posix()}):\n  - " + "\n  - ".join(errors))
    study = Study(resolved, repo, capabilities(repo))
    errors = semantic_errors(study, load_schema(repo))
    if errors:
        raise StudyError("invalid config:\n  - " + "\n  - ".join(errors))
    return study


def load(configfile: str | Path | None = None, repo: str | Path = REPO) -> Study:
    """:func:`check` of a config file (default: the embedded default, config/config.yaml of ``repo``)."""
    path = Path(configfile) if configfile else Path(repo) / "config" / "config.yaml"
    return check(yaml.safe_load(path.read_text()) or {}, repo)
