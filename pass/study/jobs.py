"""Every job of a study with its settings, as the rules in ``workflow/rules/*.smk`` derive them, without Snakemake.

Why a second reading of the rules: the tools (``passprune estimate``, ``prefetch``) and the tests need every job
and its settings on a login node in a fraction of a second, where a Snakemake dry run of the paper grid takes
half a minute and prints text that would have to be parsed back. The rules and this module share the folder
templates (:mod:`.layout`), the settings (:mod:`.jobsettings`) and the target lists (:mod:`.targets`);
``tests/test_config.py`` dry-runs Snakemake on config/test.yaml and checks that it plans exactly these jobs.

The walk mirrors the rules: each metrics.json the summary reads comes from a fine-tuning (or structure-transfer)
job, which reads a dense model and a search; a control's search reads its reference's structure; a transfer run
reads the source task's search; the search of a method whose sparsity training is shared reads that training
(rule ``sparsify``, one job per dataset, arch, seed, method and training options, whatever the target). In a study
that lists fine-tuning budgets, every fine-tuning job runs once per budget (in the run folder's ``ft-<budget>``
folder) and all of them read the one dense model and search. Jobs are keyed by their first output, so a job two
runs need is counted once, as Snakemake counts it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .budgets import ft_dir
from .core import Study
from .jobsettings import (
    dense_dir,
    finetune_settings,
    pretrain_settings,
    search_settings,
    sparse_dir,
    sparsify_settings,
    twin_dense_dir,
)
from .layout import fmt_target, xfer_name
from .targets import all_metrics, report_files

#: Rules that run no model: they read the metrics (summary table, report) or only name the targets.
SUMMARY_RULES = ("aggregate", "report", "all")


@dataclass(frozen=True)
class Job:
    """One job: its rule, the ``passprune`` stage it runs with its wildcards and ``--settings``, what it writes,
    and the jobs whose outputs it reads (by their :attr:`key`)."""

    rule: str
    stage: str | None  # pretrain / sparsify / search / finetune; None for the rules in SUMMARY_RULES
    dataset: str = ""
    arch: str = ""
    seed: int = 0
    target: float | None = None
    method: str | None = None  # the registered method a search runs (--method)
    label: str | None = None  # the run's label as the job is told it (--label, else --method)
    run: str | None = None  # the run folder's method name ({method} in results/<study>/.../<method>/macs<t>)
    budget: str | None = None  # a fine-tuning job's budget, in a study that lists finetune_budgets
    settings: dict[str, Any] = field(default_factory=dict, compare=False)
    outputs: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.outputs[0] if self.outputs else self.rule


def _fresh(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings as the job reads them back from its ``--settings`` JSON (no object shared with the config)."""
    return json.loads(json.dumps(settings, sort_keys=True))


#: A run's place in the grid: dataset, arch, seed and MACs target (None for a dense model).
Where = tuple[str, str, int, "str | None"]
MODEL = ("model.pt", "metrics.json")


class _Walk:
    """Adds each job once, after the jobs it reads from (the order a topological walk gives)."""

    def __init__(self, study: Study) -> None:
        self.study, self.layout, self.jobs = study, study.layout, {}

    def add(self, job: Job) -> str:
        self.jobs.setdefault(job.key, job)
        return job.key

    def job(self, rule: str, stage: str, where: Where, outputs: tuple[str, ...], settings, deps=(), **who) -> str:
        """Add a model job (``who``: its method, label and run folder name) unless it is there already."""
        if outputs[0] not in self.jobs:
            d, a, s, t = where
            target = None if t is None else float(t)
            job = Job(
                rule, stage, d, a, s, target, settings=_fresh(settings()), outputs=outputs, deps=tuple(deps), **who
            )
            self.add(job)
        return outputs[0]

    def pretrain(self, d: str, a: str, s: int) -> str:
        outputs = _files(dense_dir(self.study, d, a, s), *MODEL)
        return self.job("pretrain", "pretrain", (d, a, s, None), outputs, partial(pretrain_settings, self.study, d, a))

    def twin(self, d: str, a: str, s: int) -> str | None:
        """The dense model's convergence twin (``pretrain.convergence_epochs``), if the study asks for one."""
        folder = twin_dense_dir(self.study, d, a, s)
        if folder is None:
            return None
        epochs = self.study.config["pretrain"]["convergence_epochs"]
        settings = partial(pretrain_settings, self.study, d, a, epochs)
        return self.job("pretrain", "pretrain", (d, a, s, None), _files(folder, *MODEL), settings)

    def search(self, d: str, a: str, s: int, label: str, t: str) -> str:
        """A search of the grid (or of a transfer's source task); a control's also reads its reference's."""
        deps = [self.pretrain(d, a, s)]
        ref = self.study.reference_of(label)
        if ref is not None:
            deps.append(self.search(d, a, s, ref, t))
        if self.study.shares_sparsity(label):
            deps.append(self.sparsify(d, a, s, label))
        is_pass = self.study.is_pass(label)
        names = ("structure.json", "search.json") + (("hypernetwork.pt",) if is_pass else ())
        outputs = _files(f"{self.layout.run_dir(d, a, s, label, t)}/search", *names)
        settings = partial(search_settings, self.study, d, label)
        who = {"method": self.study.labels[label], "label": label, "run": label}
        return self.job("search_pass" if is_pass else "search", "search", (d, a, s, t), outputs, settings, deps, **who)

    def sparsify(self, d: str, a: str, s: int, label: str) -> str:
        """The sparsity training a label's searches start from, shared by every target (and by every label that
        trains alike: the folder is named by the training's digest)."""
        outputs = _files(sparse_dir(self.study, d, a, s, label), *MODEL)
        settings = partial(sparsify_settings, self.study, d, label)
        deps = (self.pretrain(d, a, s),)
        return self.job(
            "sparsify", "sparsify", (d, a, s, None), outputs, settings, deps, method=self.study.labels[label]
        )

    def finetune(self, d: str, a: str, s: int, label: str, t: str, b: str | None = None) -> str:
        """A run's fine-tuning at budget ``b`` (None: the study's one budget); its search is shared by all."""
        deps = (self.pretrain(d, a, s), self.search(d, a, s, label, t))
        outputs = _files(ft_dir(self.layout.run_dir(d, a, s, label, t), b), *MODEL)
        settings = partial(finetune_settings, self.study, d, b, label)
        return self.job("finetune", "finetune", (d, a, s, t), outputs, settings, deps, run=label, budget=b)

    def transfer(self, t: dict[str, Any], kind: str, a: str, s: int, tg: str, b: str | None = None) -> str:
        """One transfer run on the target task ``t['target']`` at budget ``b`` (the kinds are described in
        transfer.smk); its search on the target, if any, is shared by all budgets."""
        d, method, source = t["target"], t["method"], t["source"]
        if kind == "target_search":
            return self.finetune(d, a, s, method, tg, b)
        run = xfer_name(kind, method, source)
        folder, where = self.layout.run_dir(d, a, s, run, tg), (d, a, s, tg)
        deps = [self.pretrain(d, a, s), self.search(source, a, s, method, tg)]
        fine = partial(finetune_settings, self.study, d, b)
        label = f"{method}_{kind}_transfer"
        model = _files(ft_dir(folder, b), *MODEL)
        if kind == "structure":
            return self.job("transfer_structure", "finetune", where, model, fine, deps, label=label, run=run, budget=b)
        searcher = "pass_hypertransfer" if kind == "hypernet" else "random_widths"
        names = ("structure.json", "search.json") + (("hypernetwork.pt",) if kind == "hypernet" else ())
        settings = partial(search_settings, self.study, d, searcher)
        who = {"method": searcher, "label": searcher, "run": run}
        deps[1] = self.job(
            f"transfer_{kind}_search", "search", where, _files(f"{folder}/search", *names), settings, deps, **who
        )
        return self.job("finetune_transfer", "finetune", where, model, fine, deps, label=label, run=run, budget=b)


def _files(folder: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{folder}/{n}" for n in names)


def jobs(study: Study) -> list[Job]:
    """Every job of a full run of the study from scratch, each once, dependencies first; the last three are the
    summary table (``aggregate``), the report and ``all``."""
    walk = _Walk(study)
    pairs = study.grid_pairs()
    for d, a in pairs:
        for s in study.seeds:
            walk.pretrain(d, a, s)
    budgets = study.budgets
    for d, a in pairs:
        for s in study.seeds:
            for label in study.labels_for(a):
                for t in study.targets:
                    for b in budgets:
                        walk.finetune(d, a, s, label, t, b)
    for t in study.transfers:
        for kind in t["kinds"]:
            for a in study.transfer_archs(t):
                for s in study.seeds:
                    for tg in study.transfer_targets(t):
                        for b in budgets:
                            walk.transfer(t, kind, a, s, fmt_target(tg), b)
    twins = tuple(k for d, a in pairs for s in study.seeds if (k := walk.twin(d, a, s)) is not None)
    by_output = {o: j.key for j in walk.jobs.values() for o in j.outputs}
    metrics = tuple(dict.fromkeys(by_output[f] for f in all_metrics(study)))
    summary = walk.add(Job("aggregate", None, outputs=(study.layout.summary,), deps=metrics))
    report = walk.add(Job("report", None, outputs=tuple(report_files(study)), deps=(summary, *metrics, *twins)))
    walk.add(Job("all", None, deps=(summary, report)))
    return list(walk.jobs.values())


def counts(job_list: list[Job]) -> dict[str, int]:
    """Jobs per rule, ordered as Snakemake's "Job stats" table orders them: by topological level (a job one
    level past the deepest job it reads from, among ``job_list``), rule names sorted within a level, each rule
    where it first appears."""
    level: dict[str, int] = {}
    for j in job_list:  # dependencies come first
        level[j.key] = 1 + max((level[d] for d in j.deps if d in level), default=-1)
    order = sorted(job_list, key=lambda j: (level[j.key], j.rule))
    n = Counter(j.rule for j in job_list)
    return {rule: n[rule] for rule in dict.fromkeys(j.rule for j in order)}


def still_to_run(job_list: list[Job], workdir: str | os.PathLike) -> list[Job]:
    """The jobs a run in ``workdir`` would still do: those with an output missing there, and every job that
    reads from one of them (``all`` whenever any other job runs). Outputs that exist are taken as current:
    Snakemake would also rerun a job whose settings or code changed since."""
    todo: set[str] = set()
    for j in job_list:  # dependencies come first
        missing = any(not os.path.exists(os.path.join(workdir, o)) for o in j.outputs)
        if missing or any(d in todo for d in j.deps) or (j.rule == "all" and todo):
            todo.add(j.key)
    return [j for j in job_list if j.key in todo]
