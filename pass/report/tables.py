"""Result tables: mean ± std over seeds, as Markdown, LaTeX (booktabs) and CSV.

Why three formats from one numeric table: the CSV keeps full precision for anyone re-analysing (and for
tests that check the arithmetic), the Markdown is embedded in the reports README, and the LaTeX goes
straight into a paper.  Rounding happens only when rendering text, never in the CSV.

Std is the sample standard deviation (ddof=1, pandas' default) over seeds; with one seed there is no
spread to report, so the text cell shows the mean alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from ..files import atomic_write_text
from .aggregate import has_source


@dataclass(frozen=True)
class Stat:
    """One reported quantity: source column, short key used in the CSV, header, scale and text format."""

    column: str
    key: str
    header: str
    scale: float
    fmt: str


STATS: tuple[Stat, ...] = (
    Stat("top1_before_ft", "top1_before_ft", "Top-1 before FT (%)", 1.0, ".2f"),
    Stat("top1", "top1", "Top-1 (%)", 1.0, ".2f"),
    Stat("macs", "macs_M", "MACs (M)", 1e-6, ".2f"),
    Stat("params", "params_M", "Params (M)", 1e-6, ".3f"),
    Stat("speedup_macs", "speedup_macs", "Speed-up (MACs)", 1.0, ".2f"),
    Stat("speedup_latency", "speedup_latency", "Speed-up (latency)", 1.0, ".2f"),
    Stat("search_seconds", "search_seconds", "Search (s)", 1.0, ".1f"),
)

MAIN_KEYS: tuple[str, ...] = ("dataset", "arch", "target", "method")
TRANSFER_KEYS: tuple[str, ...] = ("dataset", "arch", "source", "target", "method")

#: Reading order inside one target: the method, its ablations and transfers, then baselines.
FAMILY_ORDER: dict[str, int] = {
    "dense": 0,
    "pass": 1,
    "pass-ablation": 2,
    "pass-transfer": 3,
    "baseline": 4,
    "control": 5,
}

_HEADERS = {
    "dataset": "Dataset",
    "arch": "Arch",
    "source": "Source",
    "target": "MACs kept",
    "method": "Method",
    "n": "n",
}


def dense_mask(df: pd.DataFrame) -> pd.Series:
    """Dense reference rows (pretraining runs)."""
    return (df["family"].astype("object") == "dense") | (df["method"].astype("object") == "dense")


def summarize(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Mean and sample std (ddof=1) over seeds of every :data:`STATS` column, per group of ``keys``.

    Returns one row per group with ``family``, ``n`` (runs in the group) and ``<key>_mean``/``<key>_std``
    columns, ordered dense first per (dataset, arch), then target descending, family, method.
    """
    keys = list(keys)
    work = df[keys].copy()
    work["family"] = df["family"].astype("object")
    work["seed"] = df["seed"]
    for st in STATS:
        work[st.key] = pd.to_numeric(df[st.column], errors="coerce") * st.scale
    g = work.groupby(keys, dropna=False, sort=False)
    out = g.agg(
        family=("family", "first"),
        n=("seed", "size"),
        **{f"{st.key}_{fn}": (st.key, fn) for st in STATS for fn in ("mean", "std")},
    )
    out = out.reset_index()
    order = out.assign(
        _dense=~dense_mask(out),
        _fam=out["family"].map(lambda f: FAMILY_ORDER.get(f, len(FAMILY_ORDER))),
    )
    sort_cols = ["dataset", "arch", "_dense"] + (["source"] if "source" in keys else []) + ["target", "_fam", "method"]
    asc = [True, True, True] + ([True] if "source" in keys else []) + [False, True, True]
    order = order.sort_values(sort_cols, ascending=asc, kind="mergesort")
    cols = keys + ["family", "n"] + [f"{st.key}_{fn}" for st in STATS for fn in ("mean", "std")]
    return out.loc[order.index, cols].reset_index(drop=True)


def main_table(df: pd.DataFrame) -> pd.DataFrame:
    """Target-trained runs (no transfer source), grouped by (dataset, arch, target, method)."""
    return summarize(df[~has_source(df)], MAIN_KEYS)


def transfer_table(df: pd.DataFrame) -> pd.DataFrame | None:
    """Transfer runs grouped by (dataset, arch, source, target, method); None when there are none.

    Kept apart from the main table because runs from different sources would otherwise be averaged
    together as if they were seeds of one configuration.
    """
    sel = df[has_source(df)]
    if sel.empty:
        return None
    return summarize(sel, TRANSFER_KEYS)


# ----------------------------------------------------------------------------- text rendering
def format_cell(mean: float, std: float, fmt: str) -> str:
    """``"93.12 ± 0.15"``; the mean alone when std is undefined (one seed); ``"–"`` when no value."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = format(mean, fmt)
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {format(std, fmt)}"
    return text


def display_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and text rows of a summarized table (numbers rounded for reading)."""
    # the source (transfer tables) sits right before the method it modifies
    keys = ["dataset", "arch", "target"] + (["source"] if "source" in table.columns else []) + ["method"]
    headers = [_HEADERS[k] for k in keys] + ["n"] + [st.header for st in STATS]
    rows = []
    for rec in table.to_dict("records"):
        row = [f"{rec[k]:.2f}" if k == "target" else str(rec[k]) for k in keys]
        row.append(str(int(rec["n"])))
        row += [format_cell(rec[f"{st.key}_mean"], rec[f"{st.key}_std"], st.fmt) for st in STATS]
        rows.append(row)
    return headers, rows


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub pipe table (tabulate), numbers right-aligned; text cells are not re-parsed as numbers."""
    headers, rows = display_rows(table)
    n_text = len(headers) - len(STATS) - 1
    align = ["right" if h == _HEADERS["target"] else "left" for h in headers[:n_text]] + ["right"] * (len(STATS) + 1)
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "–": "--",
    "×": r"$\times$",
    "−": r"$-$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "<": r"$<$",
    ">": r"$>$",  # in text mode (OT1) these would print as ¡ and ¿
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (method names contain underscores) and map ± – − × < > to LaTeX."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame) -> str:
    """A booktabs ``tabular`` (``\\usepackage{booktabs}``), with a rule between (dataset, arch) blocks."""
    headers, rows = display_rows(table)
    n_text = len(headers) - len(STATS) - 1
    spec = "".join("r" if h == _HEADERS["target"] else "l" for h in headers[:n_text]) + "r" * (len(STATS) + 1)
    lines = [
        "% Generated by passprune.report.tables; needs \\usepackage{booktabs}.",
        "% Cells: mean $\\pm$ sample std over seeds (n runs); MACs = conv+linear multiply-accumulates.",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in headers) + " \\\\",
        "\\midrule",
    ]
    block = None
    for rec, row in zip(table.to_dict("records"), rows):
        if block is not None and (rec["dataset"], rec["arch"]) != block:
            lines.append("\\midrule")
        block = (rec["dataset"], rec["arch"])
        lines.append(" & ".join(latex_escape(c) for c in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_tables(df: pd.DataFrame, tables_dir: str | os.PathLike) -> dict[str, dict[str, Path]]:
    """Write ``main.{md,tex,csv}`` (and ``transfer.*`` when there are transfer runs) atomically.

    Returns ``{table name: {"md"|"tex"|"csv": path}}``.  Stale ``transfer.*`` files from an earlier
    build are removed when the summary has no transfer runs, so the folder never shows old numbers.
    """
    tables_dir = Path(tables_dir)
    written: dict[str, dict[str, Path]] = {}
    tables = {"main": main_table(df), "transfer": transfer_table(df)}
    for name, table in tables.items():
        if table is None:
            for ext in ("md", "tex", "csv"):
                (tables_dir / f"{name}.{ext}").unlink(missing_ok=True)
            continue
        written[name] = {
            "md": atomic_write_text(tables_dir / f"{name}.md", to_markdown(table)),
            "tex": atomic_write_text(tables_dir / f"{name}.tex", to_latex(table)),
            "csv": atomic_write_text(tables_dir / f"{name}.csv", table.to_csv(index=False, lineterminator="\n")),
        }
    return written


# ----------------------------------------------------------------------------- search cost
#: What a method spent to choose (and, for the sparsity-training baselines, adapt) its structure, and the
#: shared fine-tuning; columns a summary lacks are shown as "–". The totals are derived (:func:`cost_totals`).
SEARCH_COST_STATS: tuple[Stat, ...] = (
    Stat("search_seconds", "search_seconds", "Search (s)", 1.0, ".1f"),
    Stat("search_steps", "search_steps", "Search steps", 1.0, ",.0f"),
    Stat("search_images", "search_images", "Search images", 1.0, ",.0f"),
    Stat("weight_train_steps", "weight_train_steps", "Weight-train steps", 1.0, ",.0f"),
    Stat("finetune_steps", "finetune_steps", "Fine-tune steps", 1.0, ",.0f"),
    Stat("total_steps", "total_steps", "Total steps", 1.0, ",.0f"),
    Stat("total_images", "total_images", "Total images", 1.0, ",.0f"),
)
SEARCH_COST_KEYS: tuple[str, ...] = ("dataset", "arch", "target", "method", "source")


def numeric_column(df: pd.DataFrame, column: str) -> pd.Series:
    """``df[column]`` as numbers; all NaN when the summary has no such column (older runs did not record it)."""
    return pd.to_numeric(df[column], errors="coerce") if column in df.columns else pd.Series(math.nan, index=df.index)


def training_outside_search(df: pd.DataFrame, unit: str = "steps") -> pd.Series:
    """Per run, the weight training (``weight_train_<unit>``) that its search did not already count.

    A sparsity-training baseline trains its weights *in* its search (``start_weights`` "search": those steps are
    both ``search_steps`` and ``weight_train_steps``), so they are counted once.  ``scratch`` trains after the
    search (``start_weights`` "scratch": the dense model's whole training budget again, on its own architecture,
    with ``search_steps`` 0), so its ``weight_train_*`` is added.  Summaries without ``start_weights`` count the
    part of the weight training beyond the search's own steps.
    """
    weight, search = numeric_column(df, f"weight_train_{unit}"), numeric_column(df, f"search_{unit}")
    start = df["start_weights"].astype("object") if "start_weights" in df.columns else pd.Series(None, index=df.index)
    inside = start == "search"
    unknown = start.isna()
    return weight.where(~inside, 0.0).where(~unknown, (weight - search.fillna(0.0)).clip(lower=0.0))


def cost_totals(df: pd.DataFrame) -> pd.DataFrame:
    """``total_steps`` and ``total_images`` per run: the search, the weight training outside it
    (:func:`training_outside_search`) and the shared fine-tuning; NaN where a part was not recorded."""
    out = pd.DataFrame(index=df.index)
    for unit in ("steps", "images"):
        parts = (
            numeric_column(df, f"search_{unit}"),
            training_outside_search(df, unit),
            numeric_column(df, f"finetune_{unit}"),
        )
        out[f"total_{unit}"] = parts[0] + parts[1] + parts[2]
    return out


def search_cost_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean (and sample std) over seeds of every :data:`SEARCH_COST_STATS` column per (dataset, arch,
    target, method, source), pruned runs only; a column absent from the summary is all-NaN here.

    Why a table next to the search-cost figure: the figure shows wall time, which depends on the machine;
    steps and images are what another lab can compare with.
    """
    pruned = df[~dense_mask(df)].copy()
    pruned["source"] = pruned["source"].astype("object").where(has_source(pruned), "")
    pruned[["total_steps", "total_images"]] = cost_totals(pruned)
    work = pruned[list(SEARCH_COST_KEYS)].copy()
    work["family"] = pruned["family"].astype("object")
    work["seed"] = pruned["seed"]
    for st in SEARCH_COST_STATS:
        work[st.key] = pd.to_numeric(pruned[st.column], errors="coerce") if st.column in pruned.columns else math.nan
    g = work.groupby(list(SEARCH_COST_KEYS), dropna=False, sort=False)
    cols = [f"{st.key}_{fn}" for st in SEARCH_COST_STATS for fn in ("mean", "std")]
    if work.empty:
        return pd.DataFrame(columns=[*SEARCH_COST_KEYS, "family", "n", *cols])
    out = g.agg(
        family=("family", "first"),
        n=("seed", "size"),
        **{f"{st.key}_{fn}": (st.key, fn) for st in SEARCH_COST_STATS for fn in ("mean", "std")},
    ).reset_index()
    order = out.assign(
        _src=out["source"] != "", _fam=out["family"].map(lambda f: FAMILY_ORDER.get(f, len(FAMILY_ORDER)))
    )
    order = order.sort_values(
        ["dataset", "arch", "_src", "source", "target", "_fam", "method"],
        ascending=[True, True, True, True, False, True, True],
        kind="mergesort",
    )
    return out.loc[order.index, [*SEARCH_COST_KEYS, "family", "n", *cols]].reset_index(drop=True)


def search_cost_rows(table: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Headers and text rows (means only; "–" where a quantity was not recorded)."""
    headers = ["Dataset", "Arch", "MACs kept", "Method", "Source", "n"] + [st.header for st in SEARCH_COST_STATS]
    rows = []
    for rec in table.to_dict("records"):
        row = [
            str(rec["dataset"]),
            str(rec["arch"]),
            f"{rec['target']:.2f}",
            str(rec["method"]),
            str(rec["source"]) or "–",
            str(int(rec["n"])),
        ]
        row += [format_cell(rec[f"{st.key}_mean"], None, st.fmt) for st in SEARCH_COST_STATS]
        rows.append(row)
    return headers, rows


def _render(headers: list[str], rows: list[list[str]], right: set[str], fmt: str, comment: str = "") -> str:
    """Markdown (tabulate pipe) or LaTeX (booktabs) text of pre-formatted rows."""
    if fmt == "md":
        align = ["right" if h in right else "left" for h in headers]
        if not rows:
            return "| " + " | ".join(headers) + " |\n|" + "|".join("---" for _ in headers) + "|\n"
        return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True, colalign=align) + "\n"
    spec = "".join("r" if h in right else "l" for h in headers)
    lines = [
        f"% Generated by passprune.report; needs \\usepackage{{booktabs}}.{(' ' + comment) if comment else ''}",
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(h) for h in headers) + " \\\\",
        "\\midrule",
    ]
    lines += [" & ".join(latex_escape(c) for c in row) + " \\\\" for row in rows]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_search_cost(df: pd.DataFrame, tables_dir: str | os.PathLike) -> dict[str, Path]:
    """``search_cost.{md,tex,csv}`` (always written, so a report rule can declare them)."""
    tables_dir = Path(tables_dir)
    table = search_cost_table(df)
    headers, rows = search_cost_rows(table)
    right = {"MACs kept", "n", *(st.header for st in SEARCH_COST_STATS)}
    note = "Means over seeds; -- = not recorded."
    return {
        "md": atomic_write_text(tables_dir / "search_cost.md", _render(headers, rows, right, "md")),
        "tex": atomic_write_text(tables_dir / "search_cost.tex", _render(headers, rows, right, "tex", note)),
        "csv": atomic_write_text(tables_dir / "search_cost.csv", table.to_csv(index=False, lineterminator="\n")),
    }
