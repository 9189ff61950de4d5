"""``passprune <stage>``: the one entry point every Snakemake rule calls; argument parsing and dispatch only.

Stages: ``pretrain`` (dense model), ``sparsify`` (a sparsity-training baseline's training, shared by every target's
search), ``search`` (a method's kept channels at a MACs target), ``finetune``
(physical pruning, fine-tuning, evaluation) -- their code is :mod:`passprune.stages` --, ``aggregate``
(summary.csv from metrics.json files), ``report`` (tables and figures), ``claims``, ``list``, and the MLflow
study commands. Each job stage takes its resolved settings as JSON (``--settings``, parsed into
:class:`passprune.settings.JobSettings`), so Snakemake reruns a job when the settings that job depends on
change; outputs are written atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


# ----------------------------------------------------------------------------- job stages
def _job_fields(a: argparse.Namespace, stage: str) -> dict:
    from .stages.common import parse_settings

    return {
        "stage": stage,
        "dataset": a.dataset,
        "arch": a.arch,
        "seed": a.seed,
        "out": Path(a.out),
        "settings": parse_settings(a.settings, stage, a.threads),
    }


def cmd_pretrain(a: argparse.Namespace) -> None:
    from .stages import Job, run_pretrain

    run_pretrain(Job(**_job_fields(a, "pretrain")))


def cmd_sparsify(a: argparse.Namespace) -> None:
    from .stages import SparsifyJob, run_sparsify

    run_sparsify(SparsifyJob(**_job_fields(a, "sparsify"), method=a.method, dense=Path(a.dense)))


def cmd_search(a: argparse.Namespace) -> None:
    from .stages import SearchJob, run_search

    run_search(
        SearchJob(
            **_job_fields(a, "search"),
            method=a.method,
            target=a.target,
            dense=Path(a.dense),
            label=a.label,
            source=a.source,
            reference=a.reference,
            sparse=Path(a.sparse) if a.sparse else None,
        )
    )


def cmd_finetune(a: argparse.Namespace) -> None:
    from .stages import FinetuneJob, run_finetune

    run_finetune(
        FinetuneJob(
            **_job_fields(a, "finetune"),
            target=a.target,
            dense=Path(a.dense),
            search=Path(a.search),
            label=a.label,
            source_dataset=a.source_dataset,
            structure_only=a.structure_only,
        )
    )


# ----------------------------------------------------------------------------- tables, claims, registries
def cmd_aggregate(a: argparse.Namespace) -> None:
    from .report.aggregate import aggregate

    df = aggregate(a.inputs, a.out)
    print(f"{len(df)} runs -> {a.out}")


def cmd_report(a: argparse.Namespace) -> None:
    from .report.build import build_report

    paths = build_report(a.summary, a.out, metrics_files=a.metrics, claims=a.claims)
    print("reports written:\n  " + "\n  ".join(str(p) for p in paths))


def cmd_claims(a: argparse.Namespace) -> None:
    """Print every claim's verdicts (overview, then one row per comparison) and how they were made."""
    from .files import atomic_write_text
    from .report.aggregate import read_summary
    from .report.verdicts import claims_markdown, overview_markdown, selection_rule_text
    from .stats.claims import decision_rule_text, evaluate_claims, load_claims

    summary = read_summary(a.summary)
    results = evaluate_claims(summary, load_claims(a.claims))
    print(overview_markdown(results))
    print(claims_markdown(results))
    print(decision_rule_text(results) + " " + selection_rule_text(summary))
    if a.csv:
        atomic_write_text(a.csv, results.to_csv(index=False, lineterminator="\n"))
        print(f"full table (both intervals, raw and adjusted p, notes) -> {a.csv}")


def cmd_track_init(a: argparse.Namespace) -> None:
    from .tracking import init_study

    try:
        state = init_study(a.uri, a.experiment, a.study, a.state_file)
        print(f"MLflow: experiment {a.experiment} (id {state['experiment_id']}), study run {state['parent_run_id']}")
    except Exception as err:  # noqa: BLE001  (tracking must never stop the study)
        print(
            f"[tracking] could not initialise MLflow at {a.uri}: {err}; jobs will still write their files",
            file=sys.stderr,
        )


def cmd_list(a: argparse.Namespace) -> None:
    from .data import list_datasets
    from .methods import get_method, list_methods
    from .models import list_models
    from .settings import SECTIONS, defaults_of

    print("models:   " + ", ".join(list_models()))
    print("datasets: " + ", ".join(list_datasets()))
    print("methods:")
    for name in list_methods():
        spec = get_method(name)
        opts = ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items())
        print(f"  {name:20s} [{spec.family}] {spec.summary}\n  {'':20s} options: {opts or '-'}")
    print("stage settings (defaults; passprune.settings is their one home):")
    for section, cls in SECTIONS.items():
        print(f"  {section:20s} " + ", ".join(f"{k}={v!r}" for k, v in defaults_of(cls).items()))


def cmd_track_close(a: argparse.Namespace) -> None:
    from .tracking import close_study

    try:
        close_study(a.state_file, a.status)
    except Exception as err:  # noqa: BLE001
        print(f"[tracking] could not close the study run: {err}", file=sys.stderr)


# ----------------------------------------------------------------------------- argument parsing
#: Modules that register their own subcommands (``add_commands(subparsers)``), so tools such as
#: ``track-sync`` or ``prefetch`` keep their arguments next to their code instead of growing this file.
COMMAND_MODULES: tuple[str, ...] = ("tracking_cli", "prefetch", "estimate", "registry_export")


#: The subcommands defined in this file. A job stage never imports the command modules above: that keeps
#: every job's start-up short, and a tool module that fails to import cannot break the pipeline's stages.
CORE_COMMANDS = frozenset(
    {"pretrain", "sparsify", "search", "finetune", "aggregate", "report", "claims", "list", "track-init", "track-close"}
)


def get_parser(with_modules: bool = True) -> argparse.ArgumentParser:
    """The whole command line; ``with_modules=False`` leaves out the tool modules' subcommands, so a job stage
    parses its arguments without importing them (see :data:`CORE_COMMANDS`)."""
    p = argparse.ArgumentParser(prog="passprune", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="stage", required=True)
    _add_job_commands(sub)
    _add_table_commands(sub)
    _add_tracking_commands(sub)
    for module in COMMAND_MODULES if with_modules else ():  # subcommands that live beside their concept
        import importlib

        importlib.import_module(f"passprune.{module}").add_commands(sub)
    return p


def _job_parser(sub: argparse._SubParsersAction, name: str, fn, help_: str) -> argparse.ArgumentParser:
    """A job stage's subcommand with the arguments every job shares, so the three stages name them alike."""
    q = sub.add_parser(name, help=help_)
    q.add_argument("--dataset", required=True)
    q.add_argument("--arch", required=True)
    q.add_argument("--seed", type=int, required=True)
    q.add_argument("--settings", default="{}", help="resolved settings as JSON, or @file.json")
    q.add_argument("--threads", type=int, default=None, help="torch threads (overrides settings' threads)")
    q.add_argument("--out", required=True, help="output folder")
    q.set_defaults(fn=fn)
    return q


def _add_job_commands(sub: argparse._SubParsersAction) -> None:
    """``pretrain``, ``sparsify``, ``search`` and ``finetune``: the stages Snakemake runs as jobs, each with its own
    inputs."""
    _job_parser(sub, "pretrain", cmd_pretrain, "train the dense model")
    q = _job_parser(sub, "sparsify", cmd_sparsify, "a sparsity-training method's training, shared by every target")
    q.add_argument("--method", required=True, help="a method with a shared sparsity training (slimming, depgraph, ...)")
    q.add_argument("--dense", required=True, help="dense model.pt")
    q = _job_parser(sub, "search", cmd_search, "choose the kept channels at a MACs target")
    q.add_argument("--method", required=True)
    q.add_argument("--target", type=float, required=True, help="fraction of dense MACs to keep, in (0, 1]")
    q.add_argument("--dense", required=True, help="dense model.pt")
    q.add_argument("--source", default=None, help="PASS hypernetwork.pt of a source task (hypernetwork transfer)")
    q.add_argument(
        "--label",
        default=None,
        help="name the run is reported under (search.json 'method'; default: --method), so one "
        "registered method can run with several option sets, e.g. --method pass --label pass_plr1e-4",
    )
    q.add_argument(
        "--reference",
        default=None,
        help="structure.json of a reference run (same dataset, arch, seed, target): the per-group widths "
        "the controls random_widths and scratch reuse",
    )
    q.add_argument(
        "--sparse",
        default=None,
        help="folder of this method's shared sparsity training (passprune sparsify): the search starts from its "
        "weights, only prunes, and reports the training's cost as its own",
    )
    q = _job_parser(sub, "finetune", cmd_finetune, "prune physically, fine-tune, evaluate")
    q.add_argument("--target", type=float, required=True)
    q.add_argument("--dense", required=True, help="dense model.pt of this dataset")
    q.add_argument("--search", required=True, help="search folder with structure.json and search.json")
    q.add_argument("--label", default=None, help="method name to report (transfer runs)")
    q.add_argument("--source-dataset", default=None, help="source task of a transferred structure")
    q.add_argument(
        "--structure-only",
        action="store_true",
        help="use only the kept channels from --search, starting from this dataset's dense weights",
    )


def _add_table_commands(sub: argparse._SubParsersAction) -> None:
    """``aggregate``, ``report``, ``claims`` and ``list``: commands that read results or registries, not jobs."""
    q = sub.add_parser("aggregate", help="one tidy row per finished run -> summary.csv")
    q.add_argument("inputs", nargs="+", help="metrics.json files")
    q.add_argument("--out", required=True)
    q.set_defaults(fn=cmd_aggregate)
    q = sub.add_parser("report", help="tables and figures from summary.csv")
    q.add_argument("--summary", required=True)
    q.add_argument("--out", required=True, help="reports folder")
    q.add_argument("--metrics", nargs="*", default=[], help="metrics.json files (per-group sparsity plot)")
    q.add_argument(
        "--claims",
        default=None,
        help="claims YAML (config/claims.yaml): verdicts open the README; tables/claims.*, figures/claims_forest.*",
    )
    q.set_defaults(fn=cmd_report)
    q = sub.add_parser("claims", help="check the paper's claims against summary.csv (paired by seed)")
    q.add_argument("--summary", required=True, help="results/summary.csv")
    q.add_argument("--claims", required=True, help="claims YAML, e.g. config/claims.yaml")
    q.add_argument("--csv", default=None, help="also write the full per-comparison table here")
    q.set_defaults(fn=cmd_claims)
    q = sub.add_parser("list", help="registered models, datasets and methods (with their options)")
    q.set_defaults(fn=cmd_list)


def _add_tracking_commands(sub: argparse._SubParsersAction) -> None:
    """``track-init`` and ``track-close``: the study run's ends, core commands because the workflow's start and
    end hooks call them (``track-sync`` and ``track-verify`` live in :mod:`passprune.tracking_cli`)."""
    q = sub.add_parser("track-init", help="create the MLflow store, experiment and study run once")
    q.add_argument("--uri", required=True)
    q.add_argument("--experiment", default="passprune")
    q.add_argument("--study", default="study")
    q.add_argument("--state-file", required=True)
    q.set_defaults(fn=cmd_track_init)
    q = sub.add_parser("track-close", help="mark the study run finished or failed")
    q.add_argument("--state-file", required=True)
    q.add_argument("--status", choices=["FINISHED", "FAILED"], required=True)
    q.set_defaults(fn=cmd_track_close)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((x for x in argv if not x.startswith("-")), None)
    # a warm start from the workflow's job server (the name is passprune.jobserver.ENV; read here without
    # importing that module, so a command that is no job pays nothing for it)
    if os.environ.get("PASSPRUNE_JOB_SERVER"):
        from .jobserver import run_remote

        code = run_remote(argv, command)
        if code is not None:
            raise SystemExit(code)
    args = get_parser(with_modules=command not in CORE_COMMANDS).parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError, RuntimeError, KeyError, FloatingPointError) as err:
        # Clear, one-line errors for bad input; the traceback is still there with PASSPRUNE_DEBUG=1.
        if os.environ.get("PASSPRUNE_DEBUG"):
            raise
        raise SystemExit(f"passprune {args.stage}: error: {err}") from None


if __name__ == "__main__":
    main()
