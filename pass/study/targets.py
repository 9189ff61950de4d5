"""A study's targets: the files a full run ends with and the metrics the summary reads, in its row order.

The rules (``all``, ``aggregate``, ``report``) take these lists from here, and so do the tools that enumerate a
study's jobs (:mod:`.jobs`), so both always name the same files.
"""

from __future__ import annotations

from .budgets import ft_dir, listed
from .core import Study
from .jobsettings import dense_dir, twin_dense_dir
from .layout import fmt_target, xfer_name

#: The report's figures and tables (a claims file adds one of each; with several fine-tuning budgets also the
#: claims' paired differences against the budget).
FIGURES = ("acc_vs_macs", "before_after_ft", "layerwise_sparsity", "search_cost")
TABLES = ("main", "search_cost")


# ----------------------------------------------------------------------------- targets
def figures(study: Study) -> list[str]:
    if not study.claims:
        return list(FIGURES)
    return [*FIGURES, "claims_forest"] + (["claims_budget"] if len(listed(study)) > 1 else [])


def tables(study: Study) -> list[str]:
    return [*TABLES, "claims"] if study.claims else list(TABLES)


def report_files(study: Study) -> list[str]:
    out = study.layout.report_dir
    return (
        [f"{out}/README.md"]
        + [f"{out}/tables/{t}.{x}" for t in tables(study) for x in ("md", "tex", "csv")]
        + [f"{out}/figures/{f}.png" for f in figures(study)]
    )


def targets(study: Study) -> list[str]:
    """What a full run of the study ends with (the rule ``all``): the summary table and the report."""
    return [study.layout.summary, *report_files(study)]


def transfer_runs(study: Study) -> list[tuple[str, str, int, str, str]]:
    """(target dataset, arch, seed, run folder name, target) of every configured transfer run."""
    runs = []
    for t in study.transfers:
        for kind in t["kinds"]:
            run = t["method"] if kind == "target_search" else xfer_name(kind, t["method"], t["source"])
            runs += [
                (t["target"], arch, seed, run, fmt_target(tg))
                for arch in study.transfer_archs(t)
                for seed in study.seeds
                for tg in study.transfer_targets(t)
            ]
    return runs


def all_metrics(study: Study) -> list[str]:
    """Every metrics.json the summary reads, in the order of its rows: dense models, runs, transfer runs (each run
    once per fine-tuning budget in a study that lists budgets)."""
    pairs, seeds, layout = study.grid_pairs(), study.seeds, study.layout
    files = [f"{dense_dir(study, d, a, s)}/metrics.json" for d, a in pairs for s in seeds]
    budgets = study.budgets
    files += [
        f"{ft_dir(layout.run_dir(d, a, s, m, t), b)}/metrics.json"
        for d, a in pairs
        for s in seeds
        for m in study.labels_for(a)
        for t in study.targets
        for b in budgets
    ]
    files += [f"{ft_dir(layout.run_dir(*r), b)}/metrics.json" for r in transfer_runs(study) for b in budgets]
    return list(dict.fromkeys(files))  # a target_search run may also be in the main grid


def twin_metrics(study: Study) -> list[str]:
    """The convergence twins' metrics.json (``pretrain.convergence_epochs``): read by the report's dense-model
    check only, never by the summary (no method starts from a twin)."""
    dirs = [twin_dense_dir(study, d, a, s) for d, a in study.grid_pairs() for s in study.seeds]
    return [f"{d}/metrics.json" for d in dirs if d is not None]


def report_metrics(study: Study) -> list[str]:
    """What the report reads: every run's metrics.json (:func:`all_metrics`), then the convergence twins'."""
    return all_metrics(study) + twin_metrics(study)


def dense_dirs(study: Study) -> list[str]:
    """Every dense-model folder the study uses (main grid and both sides of each transfer): shared between
    studies, so track-sync / track-verify are told which belong to this one."""
    return sorted({dense_dir(study, d, a, s) for d, a in study.all_pairs() for s in study.seeds})
