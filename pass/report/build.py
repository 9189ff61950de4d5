"""Build the reports folder: tables, figures and a README that says how the numbers were made.

Layout written under ``out_dir``::

    README.md                      claims first (with ``claims=``), then main (and transfer) table, search
                                   cost, figures linked, method note
    tables/main.{md,tex,csv}       + tables/transfer.{md,tex,csv} when there are transfer runs
    tables/search_cost.{md,tex,csv}
    tables/claims.{md,tex,csv}     with ``claims=``: one verdict per comparison (passprune.stats), per
                                   fine-tuning budget in a study with several (budget column)
    tables/structure_overlap.{md,csv}  Jaccard of kept channels per pair of methods, where the runs' structures
                                   exist (passprune.report.overlap; skipped with a note otherwise)
    tables/dense_convergence.{csv,md}, tables/dense_history.csv, figures/dense_curves.{png,pdf}
                                   the dense models' validation top-1 per epoch and the plateau rule's verdict
                                   (passprune.report.dense; the README's opening says whether all met it)
    figures/<name>.{png,pdf}       acc_vs_macs, before_after_ft, layerwise_sparsity, search_cost
                                   (+ claims_forest with ``claims=``; + claims_budget with several budgets)

Why the README states the provenance of the numbers: a table without "mean ± std over which seeds,
counting which MACs" invites comparisons with papers that count differently.  A figure whose data are
absent is skipped with a note (and any stale copy from an earlier build removed) rather than failing the
whole report, since e.g. the layer-wise plot needs per-run files that a summary-only rebuild lacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import pandas as pd

from ..files import atomic_write_text
from ..settings import PlateauRule
from .aggregate import budget_view, has_source, read_summary
from .budgets import budget_section, one_budget_files, plot_claims_budget
from .dense import DEFAULT_RULE, write_dense
from .figures import (
    NoData,
    plot_acc_vs_macs,
    plot_before_after,
    plot_claims_forest,
    plot_layerwise,
    plot_search_cost,
    single_target_blocks,
)
from .overlap import write_overlap
from .tables import dense_mask, write_search_cost, write_tables

#: (file stem, README heading, what it shows)
FIGURES: tuple[tuple[str, str, str], ...] = (
    (
        "acc_vs_macs",
        "Accuracy vs MACs",
        "Top-1 after fine-tuning against MACs, mean ± std over seeds; dense model dashed.",
    ),
    (
        "before_after_ft",
        "Before vs after fine-tuning",
        "Top-1 of the pruned network straight after pruning (hatched) and after fine-tuning (solid).",
    ),
    (
        "layerwise_sparsity",
        "Layer-wise kept ratio",
        "Kept channels / group size for each prunable group, in forward order.",
    ),
    (
        "search_cost",
        "Search cost",
        "Left: training steps behind each method's result (mean over seeds), stacked: search steps that train no "
        "weights, weight training (sparsity training inside the search, or scratch's own training of the dense "
        "model's budget after it) and the shared fine-tuning. Right: wall-clock seconds spent choosing the "
        "structure, per method and target.",
    ),
)


def _rel(path: Path, start: Path) -> str:
    try:
        return Path(os.path.relpath(path, start)).as_posix()
    except ValueError:  # different drives on Windows
        return path.as_posix()


def _provenance_note(df: pd.DataFrame, summary_csv: Path, out_dir: Path) -> str:
    dense = dense_mask(df)
    transfer = has_source(df)
    seeds = ", ".join(str(s) for s in sorted(df["seed"].unique()))
    blocks = ", ".join(f"{d}/{a}" for d, a in dict.fromkeys(zip(df["dataset"], df["arch"])))
    return (
        f"Numbers were produced by `passprune report` from `{_rel(summary_csv, out_dir)}` "
        f"({len(df)} runs: {int(dense.sum())} dense, {int((~dense & ~transfer).sum())} pruned, "
        f"{int(transfer.sum())} transfer; {blocks}), which `passprune aggregate` builds from the jobs' "
        "`metrics.json` files. "
        f"Cells are mean ± sample standard deviation (ddof = 1) over seeds {{{seeds}}}; the `n` column "
        "gives the runs per row and no ± is shown when n = 1. "
        "Top-1 is test-set accuracy (%), before and after fine-tuning the pruned network. "
        "MACs count the multiply-accumulates of convolution and linear layers for one input image "
        '(the quantity pruning papers call "FLOPs"); params count all parameters. '
        "Speed-up (MACs) = dense MACs / pruned MACs; speed-up (latency) = dense / pruned measured latency "
        "at the largest benchmarked batch size (– when not measured); search (s) = wall time of the "
        'structure search. "MACs kept" is the target fraction of dense MACs.'
    )


def _claims_outputs(df: pd.DataFrame, claims: str | os.PathLike | None, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Claims table + forest plot and the README section; with ``claims=None``, stale copies are removed
    (an old verdict next to new numbers would be worse than none)."""
    stale = [out_dir / "tables" / f"claims.{x}" for x in ("md", "tex", "csv")] + [
        out_dir / "figures" / f"claims_forest.{x}" for x in ("png", "pdf")
    ]
    by_budget = [out_dir / "figures" / f"claims_budget.{x}" for x in ("png", "pdf")]  # several budgets only
    if claims is None:
        for p in stale + by_budget:
            p.unlink(missing_ok=True)
        return [], budget_section(df, None)
    from ..stats.claims import evaluate_claims_by_budget, load_claims
    from .verdicts import readme_section, write_claims_tables

    results = evaluate_claims_by_budget(df, load_claims(claims))  # evaluate_claims' table without budgets
    written = list(write_claims_tables(results, out_dir / "tables").values())
    written += plot_claims_forest(results, out_dir / "figures" / "claims_forest")
    if "budget" in results.columns and results["budget"].nunique() > 1:
        written += plot_claims_budget(results, out_dir / "figures" / "claims_budget")
    else:
        for p in by_budget:
            p.unlink(missing_ok=True)
    rel = os.path.relpath(claims)  # as the user would type it from here (config/claims.yaml), not absolute
    claims_ref = Path(claims if rel.startswith("..") else rel).as_posix()
    return written, budget_section(df, results) + readme_section(results, df, claims_ref)


def build_report(
    summary_csv: str | os.PathLike,
    out_dir: str | os.PathLike,
    metrics_files: Sequence[str | os.PathLike] = (),
    claims: str | os.PathLike | None = None,
    *,
    keep_figures: Collection[str] = (),
    notes: str = "",
    plateau: PlateauRule = DEFAULT_RULE,
    dense_history: str | os.PathLike | None = None,
) -> list[Path]:
    """Write tables, figures and ``README.md`` under ``out_dir`` (every file atomically).

    ``metrics_files`` are the per-run ``metrics.json`` files; the layer-wise figure and the structure-overlap
    table need them.  ``claims`` is a claims YAML file (``config/claims.yaml``): its verdicts open the README and
    go to ``tables/claims.*`` and ``figures/claims_forest.*``.  ``keep_figures``: figures whose earlier copy in
    ``out_dir`` stays (and is shown, saying so) when this build lacks their data -- a committed snapshot rebuilt
    from its summary alone (:mod:`passprune.report.snapshot`).  ``notes``: Markdown put first in the README under
    "About this snapshot".  ``plateau``: the rule the dense models' learning curves are judged by (the README's
    opening says whether every dense model met it); ``dense_history``: an earlier build's ``dense_history.csv``,
    read when ``metrics_files`` hold no dense model (a snapshot rebuild).  Returns the paths written, README last.
    """
    summary_csv, out_dir = Path(summary_csv), Path(out_dir)
    df = read_summary(summary_csv)
    written: list[Path] = []

    claims_written, claims_lines = _claims_outputs(df, claims, out_dir)  # first: a bad claims file fails fast
    view = budget_view(df)  # several fine-tuning budgets: one block per budget (df itself otherwise)
    metrics_files = one_budget_files(metrics_files, df)  # a structure is the same at every budget
    tables = write_tables(view, out_dir / "tables")
    for fmts in tables.values():
        written += list(fmts.values())
    cost = write_search_cost(view, out_dir / "tables")
    written += list(cost.values()) + claims_written
    overlap_written, overlap_lines = write_overlap(metrics_files, out_dir / "tables")
    dense_written, dense_opening, dense_lines = write_dense(metrics_files, out_dir, plateau, dense_history)
    figures_written, skipped, kept = _write_figures(view, metrics_files, out_dir / "figures", keep_figures)
    written += overlap_written + dense_written + figures_written

    lines = [
        "# Results",
        "",
        *(["## About this snapshot", "", notes.strip(), ""] if notes.strip() else []),
        *dense_opening,
        *claims_lines,
        *dense_lines,
        "## How the numbers were made",
        "",
        _provenance_note(df, summary_csv, out_dir),
        "",
        *_tables_section(tables, cost),
        *overlap_lines,
        *_figures_section(skipped, _captions(view), kept),
    ]
    written.append(atomic_write_text(out_dir / "README.md", "\n".join(lines)))
    return written


def _write_figures(
    df: pd.DataFrame, metrics_files: Sequence[str | os.PathLike], fig_dir: Path, keep: Collection[str] = ()
) -> tuple[list[Path], dict[str, str], set[str]]:
    """Every figure of :data:`FIGURES` that has data: ``(paths written, {stem: why skipped}, stems kept)``. A figure
    without data is skipped, not fatal (a summary-only rebuild lacks the per-run files the layer-wise plot needs);
    its earlier copy is removed, unless ``keep`` names it and both its PNG and PDF are there."""
    makers: dict[str, Callable[[Path], list[Path]]] = {
        "acc_vs_macs": lambda stem: plot_acc_vs_macs(df, stem),
        "before_after_ft": lambda stem: plot_before_after(df, stem),
        "layerwise_sparsity": lambda stem: plot_layerwise(list(metrics_files), stem),
        "search_cost": lambda stem: plot_search_cost(df, stem),
    }
    written: list[Path] = []
    skipped: dict[str, str] = {}
    kept: set[str] = set()
    for stem, _, _ in FIGURES:
        try:
            written += makers[stem](fig_dir / stem)
        except NoData as why:
            copies = [fig_dir / f"{stem}{ext}" for ext in (".png", ".pdf")]
            if stem in keep and all(p.is_file() for p in copies):
                kept.add(stem)
                continue
            skipped[stem] = str(why)
            for p in copies:  # never leave an earlier build's figure next to a "skipped" note
                p.unlink(missing_ok=True)
    return written, skipped, kept


def _tables_section(tables: dict[str, dict[str, Path]], cost: dict[str, Path]) -> list[str]:
    """README lines for the main (and transfer) table and the search cost, each linked to its LaTeX and CSV so
    a reader can take the full-precision numbers."""
    lines = ["## Main table", ""]
    lines.append(tables["main"]["md"].read_text(encoding="utf-8").rstrip("\n"))
    lines += ["", "Also as [LaTeX](tables/main.tex) and [CSV](tables/main.csv) (full precision).", ""]
    if "transfer" in tables:
        lines += ["## Transfer", "", "Runs whose structure or hypernetwork came from the `Source` dataset.", ""]
        lines.append(tables["transfer"]["md"].read_text(encoding="utf-8").rstrip("\n"))
        lines += ["", "Also as [LaTeX](tables/transfer.tex) and [CSV](tables/transfer.csv).", ""]
    lines += [
        "## Search cost",
        "",
        "Mean over seeds of what each method spent choosing its structure (and, for the sparsity-training "
        "baselines, training weights), and the shared fine-tuning; – = not recorded by these runs. "
        "Total steps (images) = search + weight training outside the search + fine-tuning: a sparsity-training "
        "baseline's weight training is its search and is counted once; `scratch` searches nothing but trains its "
        "architecture with the dense model's whole budget again, which its weight-train steps count.",
        "",
        cost["md"].read_text(encoding="utf-8").rstrip("\n"),
        "",
        "Also as [LaTeX](tables/search_cost.tex) and [CSV](tables/search_cost.csv).",
        "",
    ]
    return lines


def _captions(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """(heading, caption) of every figure: :data:`FIGURES`' own, except where the data change what a figure shows
    (a single MACs target draws points per method, not a curve)."""
    captions = {stem: (title, what) for stem, title, what in FIGURES}
    single = single_target_blocks(df)
    pruned = df[~dense_mask(df)]
    if single and len(single) == len(dict.fromkeys(zip(pruned["dataset"], pruned["arch"]))):
        captions["acc_vs_macs"] = (
            "Accuracy per method",
            "Top-1 after fine-tuning per method at the study's single MACs target: mean over seeds with its 95% "
            "t-interval (none with one seed); dense model dashed, its 95% interval shaded. No accuracy-vs-MACs "
            "curve: every method meets the same target, so their MACs differ by under 1%.",
        )
    elif single:
        captions["acc_vs_macs"] = (
            "Accuracy vs MACs",
            captions["acc_vs_macs"][1] + " Panels with a single MACs target show one point per method (mean over "
            "seeds with its 95% t-interval) instead of a curve.",
        )
    return captions


def _figures_section(
    skipped: dict[str, str], captions: dict[str, tuple[str, str]], kept: Collection[str] = ()
) -> list[str]:
    """README lines for every figure, in :data:`FIGURES` order; a skipped one keeps its heading and says why, so
    the README's outline does not depend on which data a build had; a kept one says where it comes from."""
    lines = ["## Figures", ""]
    for stem, _, _ in FIGURES:
        title, what = captions[stem]
        lines += [f"### {title}", ""]
        if stem in skipped:
            lines += [f"_Skipped: {skipped[stem]}._", ""]
            continue
        lines += [what, ""]
        if stem in kept:
            lines += [f"_Kept from the build that had the runs' metrics.json files: {KEPT_NOTE}._", ""]
        lines += [f"![{title}](figures/{stem}.png)", "", f"[PDF](figures/{stem}.pdf)", ""]
    return lines


#: Why a kept figure was not redrawn.
KEPT_NOTE = "this rebuild, from summary.csv alone, cannot redraw it"
