"""Collect finished jobs' ``metrics.json`` files into one tidy table (``summary.csv``).

One row per run keeps every later step (tables, figures, ad-hoc pandas) a plain group-by.  Only scalar
top-level keys become columns: nested values (training history, settings, provenance, per-group kept
channels) do not fit a tidy row and stay in the per-run files, which the layer-wise figure reads directly.

Malformed input is an error rather than a skipped row, because a silently missing run would bias the
mean over seeds without anyone noticing.  The same reasoning rejects duplicate runs.

The atomic-write helpers live here (not in :mod:`passprune.files`) so that the report layer does not import
torch: a report must be rebuildable on a machine that only has the plotting stack.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..files import atomic_write_text
from ..records import DENSE_DEFAULTS, RUN_KEY, load_metrics
from ..settings import FinetuneSettings, defaults_of

#: Columns every summary has, in this order (other scalar keys follow alphabetically).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "dataset",
    "arch",
    "method",
    "family",
    "target",
    "seed",
    "source",
    "top1_before_ft",
    "top1",
    "val_top1",
    "macs",
    "params",
    "speedup_macs",
    "speedup_latency",
    "search_seconds",
)


# ----------------------------------------------------------------------------- reading metrics.json
def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def is_dense(metrics: dict[str, Any]) -> bool:
    """A dense run is the pretraining job (its metrics describe the unpruned reference model)."""
    return metrics.get("stage") == "pretrain"


def budget_columns(metrics: dict[str, Any]) -> dict[str, Any]:
    """A fine-tuning run's budget as columns, from the ``budget`` record its settings carry (a study that lists
    fine-tuning budgets, or matches total steps; none otherwise, so other studies' summaries keep their columns):
    ``budget`` (its name), ``budget_steps`` (the budget's fine-tuning steps), ``budget_weight_train_steps`` (the
    search's weight training taken off this run under matched_total_steps, else 0), and the recipe's
    ``budget_epochs``, ``budget_lr`` and ``budget_schedule`` (its learning-rate schedule runs over its steps)."""
    settings = metrics.get("settings") if isinstance(metrics.get("settings"), dict) else {}
    info = settings.get("budget")
    if metrics.get("stage") != "finetune" or not isinstance(info, dict):
        return {}
    recipe = {**defaults_of(FinetuneSettings), **(settings.get("finetune") or {})}
    return {
        "budget": info.get("name"),
        "budget_steps": info.get("steps"),
        "budget_weight_train_steps": info.get("weight_train_steps", 0),
        "budget_epochs": recipe["epochs"],
        "budget_lr": recipe["lr"],
        "budget_schedule": recipe["schedule"],
    }


def metrics_row(metrics: dict[str, Any], path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The scalar top-level keys of one run, with dense defaults and the guaranteed columns filled (and its
    fine-tuning budget's columns, :func:`budget_columns`, in a study with budgets)."""
    row = {k: v for k, v in metrics.items() if _is_scalar(v)}
    row.update(budget_columns(metrics))
    if is_dense(metrics):
        for k, v in DENSE_DEFAULTS.items():
            if row.get(k) is None:
                row[k] = v
    for col in SUMMARY_COLUMNS:
        row.setdefault(col, None)
    row["seed"] = int(row["seed"])
    row["target"] = float(row["target"])
    if path is not None:
        row["metrics_file"] = str(path)
    return row


# ----------------------------------------------------------------------------- summary table
def order_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Guaranteed columns first (stable layout for readers), then the rest alphabetically."""
    for col in SUMMARY_COLUMNS:
        if col not in df.columns:
            df[col] = None
    rest = sorted(c for c in df.columns if c not in SUMMARY_COLUMNS and c != "metrics_file")
    tail = ["metrics_file"] if "metrics_file" in df.columns else []
    return df[list(SUMMARY_COLUMNS) + rest + tail]


def sort_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Stable sort by (dataset, arch, target desc, method, seed); ties keep a fixed order by source. With
    fine-tuning budgets, a method's runs go by budget (fewest steps first) before seed.

    Target descending puts the dense reference (target 1.0) first within each (dataset, arch).
    """
    key = df.assign(_source=df["source"].astype("object").where(df["source"].notna(), ""))
    budget = ["budget_steps", "budget"] if "budget" in df.columns else []
    key = key.sort_values(
        ["dataset", "arch", "target", "method", *budget, "seed", "_source"],
        ascending=[True, True, False, True, *[True] * len(budget), True, True],
        kind="mergesort",
    )
    return df.loc[key.index].reset_index(drop=True)


def _check_duplicates(rows: Sequence[dict[str, Any]]) -> None:
    """Two rows of one run (its RUN_KEY and, in a study with budgets, its budget) would count a seed twice."""
    seen: dict[tuple, str] = {}
    keys = RUN_KEY + (("budget",) if any("budget" in row for row in rows) else ())
    for row in rows:
        ident = tuple(row.get(k) for k in keys)
        if ident in seen:
            raise ValueError(f"duplicate run {dict(zip(keys, ident))}: {seen[ident]} and {row['metrics_file']}")
        seen[ident] = row["metrics_file"]


def aggregate(metrics_files: Sequence[str | os.PathLike], out_csv: str | os.PathLike) -> pd.DataFrame:
    """One tidy row per ``metrics.json`` -> ``out_csv`` (written atomically); returns the DataFrame.

    Every file is validated before anything is written, so a bad file leaves an existing summary intact.
    """
    if not metrics_files:
        raise ValueError("aggregate: no metrics.json files given")
    rows = [metrics_row(load_metrics(p), p) for p in metrics_files]
    _check_duplicates(rows)
    df = sort_summary(order_columns(pd.DataFrame(rows)))
    atomic_write_text(out_csv, df.to_csv(index=False, lineterminator="\n"))
    return df


def read_summary(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``summary.csv`` back with the types the report code relies on.

    CSV loses types (an all-empty ``source`` column comes back as floats), so normalise here once. A budget's
    name stays a string (``100`` would come back as a number), and is None on the dense rows.
    """
    df = pd.read_csv(path, dtype={"budget": str})
    if "budget" in df.columns:
        df["budget"] = df["budget"].astype("object").where(df["budget"].notna(), None)
    for col in SUMMARY_COLUMNS:
        if col not in df.columns:
            df[col] = None
    numeric = [c for c in SUMMARY_COLUMNS if c not in ("dataset", "arch", "method", "family", "seed", "source")]
    for col in numeric + [c for c in ("macs_ratio",) if c in df.columns]:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["seed"] = pd.to_numeric(df["seed"], errors="raise").astype(int)
    src = df["source"].astype("object")
    df["source"] = src.where(src.notna() & (src.astype(str) != ""), None)
    return df


def has_source(df: pd.DataFrame) -> pd.Series:
    """Rows that are transfer runs (a non-empty ``source`` dataset)."""
    src = df["source"].astype("object")
    return src.notna() & (src.astype(str) != "") & ~src.apply(lambda v: isinstance(v, float) and math.isnan(v))


# ----------------------------------------------------------------------------- fine-tuning budgets
def budget_names(df: pd.DataFrame) -> list[str]:
    """The fine-tuning budgets of a summary, fewest steps first (ties by name); [] for a study without budgets."""
    if "budget" not in df.columns:
        return []
    rows = df[df["budget"].notna()]
    steps = pd.to_numeric(rows["budget_steps"], errors="coerce").groupby(rows["budget"].astype(str)).median()
    return sorted(steps.index, key=lambda b: (steps[b], b))


def budget_rows(df: pd.DataFrame, budget: str) -> pd.DataFrame:
    """One budget's runs with the dense models (which every budget shares): what a study with that one budget
    would have summarised."""
    return df[df["budget"].isna() | (df["budget"].astype("object") == budget)]


def budget_view(df: pd.DataFrame) -> pd.DataFrame:
    """The summary as the tables and figures show it: with several budgets, each budget's runs (and a copy of
    the dense rows) under their own block, the budget written into ``arch`` (``resnet20 · FT 2/3: s468``, in
    order of steps), so no mean over seeds ever mixes budgets; unchanged with one budget or none."""
    names = budget_names(df)
    if len(names) < 2:
        return df
    width = len(str(len(names)))
    parts = [
        budget_rows(df, b).assign(
            arch=lambda d, i=i, b=b: d["arch"].astype(str) + f" · FT {i:0{width}d}/{len(names)}: {b}"
        )
        for i, b in enumerate(names, 1)
    ]
    return pd.concat(parts, ignore_index=True)
