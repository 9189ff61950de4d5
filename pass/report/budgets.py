"""The fine-tuning budgets in the report: what each budget was, which total-steps rule the study used, which
verdicts change with the budget, and each claim's paired difference against the budget (a figure).

Why the README opens with this in a study with several budgets: a verdict reached after 100 fine-tuning steps
may say how fast a network recovers rather than what it reaches, and pruning rankings are known to move with
the retraining budget. A reader should see first which conclusions hold at every budget and which do not.

Everything here reads ``summary.csv``'s budget columns (:func:`passprune.report.aggregate.budget_columns`) and
:func:`passprune.stats.claims.evaluate_claims_by_budget`'s table; a summary without budgets gives no section
and no figure.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .aggregate import budget_names
from .figures import VERDICT_COLORS, _style, margin_lines, save_figure, save_message_figure
from .tables import _render

#: What identifies one comparison across budgets (``versus`` may differ: best_baseline is chosen per budget).
COMPARISON_KEYS = ("claim", "dataset", "arch", "target", "method", "versus_rule")


# ----------------------------------------------------------------------------- the budgets and the rule
def schedule_text(schedule: str, lr: float, steps: float) -> str:
    """The learning rate a budget's recipe implies over its steps (passprune.schedule.make_scheduler)."""
    n = "?" if pd.isna(steps) else f"{int(steps):,}"
    if schedule == "cosine":
        return f"cosine from {lr:g} to 0 over {n} steps"
    if schedule == "onecycle":
        return f"one-cycle over {n} steps: up to {lr:g} in the first 25%, then down"
    return f"constant {lr:g}"


def _distinct(values: pd.Series) -> str:
    return ", ".join(dict.fromkeys(str(v) for v in values.dropna()))


def budgets_table(df: pd.DataFrame) -> str:
    """One line per budget: its fine-tuning steps, epochs and learning-rate schedule, and its runs."""
    rows = []
    for b in budget_names(df):
        sub = df[df["budget"] == b]
        steps = pd.to_numeric(sub["budget_steps"], errors="coerce")
        lr, schedule = float(sub["budget_lr"].iloc[0]), str(sub["budget_schedule"].iloc[0])
        rows.append(
            [
                b,
                " / ".join(f"{int(s):,}" for s in sorted(steps.dropna().unique())) or "–",
                _distinct(sub["budget_epochs"].map(lambda e: int(e) if pd.notna(e) else None)),
                schedule_text(schedule, lr, steps.median()),
                str(len(sub)),
            ]
        )
    headers = ["Budget", "Fine-tuning steps", "Epochs", "Learning rate", "Runs"]
    return _render(headers, rows, {"Fine-tuning steps", "Runs"}, "md")


def _numeric(df: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(df[column], errors="coerce") if column in df.columns else pd.Series(np.nan, index=df.index)


def _text(df: pd.DataFrame, column: str) -> pd.Series:
    return df[column].astype("object") if column in df.columns else pd.Series(None, index=df.index, dtype=object)


def rule_text(df: pd.DataFrame) -> str:
    """Which total-steps rule the study used, read from its runs: matched (weight training taken off the
    fine-tuning), shared fine-tuning (weight training on top), or no method trains weights (the two coincide);
    and the scratch control's budget."""
    matched = _numeric(df, "budget_weight_train_steps") > 0
    trains = (_numeric(df, "weight_train_steps") > 0) & (_text(df, "start_weights") == "search")
    if matched.any():
        w = df[matched].groupby("method")["budget_weight_train_steps"].median()
        who = ", ".join(f"{m} ({int(v)})" for m, v in w.items())
        text = (
            "Total-steps rule: **matched total steps** (`matched_total_steps: true`): the weight-training steps of "
            f"the sparsity-training baselines' searches were taken off their fine-tuning ({who} steps), so every "
            "method's weights got the budget's number of updates after the dense model."
        )
    elif trains.any():
        who = ", ".join(sorted(set(df.loc[trains, "method"].astype(str))))
        text = (
            "Total-steps rule: **shared fine-tuning** (`matched_total_steps` off): every method got the budget's "
            f"fine-tuning; the sparsity-training baselines ({who}) also trained the weights inside their search, "
            "on top of it (their `weight_train_steps`)."
        )
    else:
        text = (
            "Total-steps rule: no method here trains the weights inside its search, so both rules coincide: every "
            "method's weights got the budget's fine-tuning steps after the dense model."
        )
    scratch = df[_text(df, "start_weights") == "scratch"]
    if not scratch.empty:
        dense = _distinct(_numeric(scratch, "dense_pretrain_steps").map(lambda v: int(v) if pd.notna(v) else None))
        text += (
            " `scratch` trains its architecture from a fresh initialisation with the dense model's own recipe "
            f"({dense or '?'} steps), then the budget's fine-tuning: dense + fine-tune steps at every budget."
        )
    return text


# ----------------------------------------------------------------------------- verdicts across budgets
def _target(r: pd.Series) -> str:
    return "curve" if pd.isna(r["target"]) else f"MACs {float(r['target']):g}"


def _where(r: pd.Series) -> str:
    return f"{r['method']} − {r['versus_rule']} · {r['dataset']}/{r['arch']} · {_target(r)}"


def _at(r: pd.Series) -> str:
    if pd.isna(r["mean_diff"]):
        return f"{r['verdict']} at {r['budget']}"
    ci = "" if pd.isna(r["ci_low"]) else f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
    return f"{r['verdict']} at {r['budget']} ({r['mean_diff']:+.2f}{ci})"


def verdict_changes(results: pd.DataFrame) -> list[str]:
    """README lines: each comparison whose verdict differs between budgets (with its difference and 95%
    t-interval at each), then those with the same verdict at every budget, then the claims without data."""
    from ..stats.claims import NO_DATA, base_verdict

    changed, same, empty = [], [], []
    for _, g in results.groupby(list(COMPARISON_KEYS), dropna=False, sort=False):
        g = g.sort_values("budget_steps", kind="mergesort")
        first, verdicts = g.iloc[0], g["verdict"].map(base_verdict)
        if (verdicts == NO_DATA).all():
            empty.append(f"`{first['claim']}`")
        elif verdicts.nunique() > 1:
            changed.append(f"- `{first['claim']}` ({_where(first)}): " + "; ".join(_at(r) for _, r in g.iterrows()))
        else:
            same.append(f"`{first['claim']}` ({_where(first)}): {verdicts.iloc[0]}")
    lines = ["**Verdicts that change with the budget:**", ""]
    lines += changed or ["- none: every comparison has the same verdict at every budget."]
    lines += ["", "**The same at every budget:** " + ("; ".join(same) if same else "none") + "."]
    if empty:
        lines += ["", f"No data at any budget (methods not run here): {', '.join(dict.fromkeys(empty))}."]
    return lines + [""]


def budget_section(df: pd.DataFrame, results: pd.DataFrame | None) -> list[str]:
    """The README's opening section in a study with fine-tuning budgets (none without): the budgets, the
    total-steps rule, and with claims which verdicts change with the budget and how the Holm family is formed."""
    names = budget_names(df)
    if not names:
        if (_numeric(df, "budget_weight_train_steps") > 0).any():
            return ["## Fine-tuning budget", "", rule_text(df), ""]
        return []
    lines = [
        "## Fine-tuning budgets",
        "",
        f"Every structure was fine-tuned at {len(names)} budget(s); the dense models and the searches are shared "
        "by all budgets, so two budgets differ only in the fine-tuning. Tables and figures below show each budget "
        "as its own block (`FT i/n: <budget>` after the architecture).",
        "",
        budgets_table(df).rstrip("\n"),
        "",
        rule_text(df),
        "",
    ]
    if results is not None and "budget" in results.columns and len(names) > 1:
        lines += verdict_changes(results)
        lines += [
            "Each budget's claims are judged as a study run at that budget alone would judge them: Holm's family "
            "is the comparisons of one budget, not of all budgets together (see docs/method.md).",
            "",
            "![Claims: paired difference against the fine-tuning budget](figures/claims_budget.png)",
            "",
        ]
    return lines


def one_budget_files(metrics_files: Sequence[str | os.PathLike], df: pd.DataFrame) -> list[str | os.PathLike]:
    """The metrics files of the first budget (and every file outside a budget folder: the dense models): the
    layer-wise figure and the structure overlap read structures, which every budget shares, so one budget's
    runs show them without counting a structure once per budget."""
    names = budget_names(df)
    if len(names) < 2:
        return list(metrics_files)
    keep = f"ft-{names[0]}"  # a budget's folder in the run folder (passprune.study.budgets.BUDGET_DIR)
    return [f for f in metrics_files if not Path(f).parent.name.startswith("ft-") or Path(f).parent.name == keep]


# ----------------------------------------------------------------------------- figure
def _comparisons(results: pd.DataFrame) -> list[pd.DataFrame]:
    r = results[pd.to_numeric(results["mean_diff"], errors="coerce").notna()]
    return [g.sort_values("budget_steps") for _, g in r.groupby(list(COMPARISON_KEYS), dropna=False, sort=False)]


def plot_claims_budget(results: pd.DataFrame, out_stem: str | os.PathLike) -> list[Path]:
    """Each claim's mean paired difference (method − versus) against the fine-tuning budget's steps (log axis),
    with its 95% t-interval, coloured by the verdict at that budget; the claimed margin dashed. One panel per
    comparison; a figure saying so when no comparison has paired seeds."""
    from ..stats.claims import base_verdict

    groups = _comparisons(results)
    with _style():
        if not groups:
            return save_message_figure("No claim comparison has paired seeds at any budget.", out_stem)
        cols = min(3, len(groups))
        rows = math.ceil(len(groups) / cols)
        fig = Figure(figsize=(4.2 * cols, 2.9 * rows + 0.5), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, g in zip(axes.flat, groups):
            _budget_panel(ax, g, base_verdict)
        for ax in axes.flat[len(groups) :]:
            ax.set_visible(False)
        handles = [
            Line2D([], [], color=c, marker="o", lw=0, label=v)
            for v, c in VERDICT_COLORS.items()
            if (results["verdict"].map(base_verdict) == v).any()
        ]
        handles += [
            Line2D([], [], color="grey", lw=2.0, label="95% t-interval (decides)"),
            Line2D([], [], color="black", lw=1.0, ls=(0, (2, 1.5)), label="claimed margin"),
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles), fontsize="x-small")
        return save_figure(fig, out_stem)


def _budget_panel(ax, g: pd.DataFrame, base_verdict) -> None:
    """One comparison: its difference and 95% t-interval at each budget, joined by a thin line."""
    x = pd.to_numeric(g["budget_steps"], errors="coerce").to_numpy(float)
    y = g["mean_diff"].to_numpy(float)
    ax.plot(x, y, color="grey", lw=0.8, zorder=1)
    for xi, (_, r) in zip(x, g.iterrows()):
        col = VERDICT_COLORS.get(base_verdict(r["verdict"]), "black")
        if pd.notna(r["ci_low"]):
            ax.plot([xi, xi], [r["ci_low"], r["ci_high"]], color=col, lw=2.0, solid_capstyle="butt")
        ax.plot([xi], [r["mean_diff"]], marker="o", ms=5, color=col, mec="white", mew=0.6, zorder=3)
        versus = "" if r["versus"] == r["versus_rule"] else f"\nvs {r['versus']}"
        ax.annotate(
            f"{r['budget']}{versus}", (xi, r["mean_diff"]), fontsize=5, xytext=(3, 3), textcoords="offset points"
        )
    first = g.iloc[0]
    for m in margin_lines(first["relation"], float(first["margin"])):
        ax.axhline(m, color="black", lw=1.0, ls=(0, (2, 1.5)))
    ax.axhline(0, color="grey", lw=0.6, zorder=0)
    ax.set_xscale("log")
    ax.set_xticks(x, [f"{int(v):,}" for v in x], fontsize="x-small")
    ax.minorticks_off()
    ax.set_xlabel("fine-tuning steps (budget)", fontsize="x-small")
    unit = "top-1 points" if first["unit"] == "points" else "× speed-up"
    ax.set_ylabel(f"{first['method']} − versus ({unit})", fontsize="x-small")
    ax.set_title(f"{first['claim']}\n{first['dataset']}/{first['arch']} · {_target(first)}", fontsize=7)
