"""The claims table: :func:`passprune.stats.evaluate_claims`' rows as Markdown, LaTeX and CSV, plus the
README section that says how the verdicts were made.

Why the README opens with this section: the claims are what a reader wants to know first ("does PASS do
what the paper says, here?"), and a verdict without its rule (paired how, which interval, which test,
corrected over how many comparisons, which baseline, selected how) cannot be judged.  The CSV keeps full
precision and every column (both intervals, raw and adjusted p, notes); the text tables round.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..files import atomic_write_text
from ..stats.claims import BEST_BASELINE, VERDICTS, decision_rule_text, verdict_counts
from .tables import _render

#: Families whose runs go through PASS's search (their ``select_on_val`` says how PASS picked its state).
PASS_FAMILIES: tuple[str, ...] = ("pass", "pass-ablation", "pass-transfer")
_UNIT = {"points": " pt", "x": "x"}


def _num(v: float, fmt: str = "+.2f") -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else format(float(v), fmt)


def _interval(lo: float, hi: float) -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (lo, hi)):
        return "–"
    return f"[{lo:+.2f}, {hi:+.2f}]"


def _p(p: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def claimed(relation: str, margin: float, unit: str) -> str:
    """The claimed difference in words-as-symbols: ``> +1.00 pt``, ``< -0.50 pt``, ``within ±1.00 pt``."""
    u = _UNIT.get(unit, "")
    if relation == "greater":
        return f"> {margin:+.2f}{u}"
    if relation == "less":
        return f"< {-margin:+.2f}{u}"
    return f"within ±{margin:.2f}{u}"


def _text(v: object) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(v)


def claims_rows(results: pd.DataFrame, notes: bool = True) -> tuple[list[str], list[list[str]]]:
    """Headers and rounded text rows of the per-comparison claims table."""
    budgets = "budget" in results.columns  # claims judged per fine-tuning budget (evaluate_claims_by_budget)
    headers = [
        "Claim",
        "Dataset",
        "Arch",
        "MACs kept",
        *(["Budget"] if budgets else []),
        "Comparison",
        "Claimed diff",
        "n",
        "Mean diff",
        "95% CI (t)",
        "95% CI (bootstrap)",
        "Test",
        "p (Holm)",
        "Verdict",
    ] + (["Notes"] if notes else [])
    rows = []
    for r in results.to_dict("records"):
        if r["verdict"] == "no data" and _text(r["dataset"]) == "–":
            target = "–"
        else:
            target = "curve" if pd.isna(r["target"]) else f"{float(r['target']):.2f}"
        comp = f"{r['method']} − {r['versus']}" + (
            " (best baseline)" if r["versus_rule"] == BEST_BASELINE and r["versus"] != BEST_BASELINE else ""
        )
        unit = _UNIT.get(r["unit"], "")
        row = [
            r["claim"],
            _text(r["dataset"]),
            _text(r["arch"]),
            target,
            *([_text(r["budget"])] if budgets else []),
            comp,
            claimed(r["relation"], float(r["margin"]), r["unit"]),
            str(int(r["n"])),
            _num(r["mean_diff"]) + ("" if pd.isna(r["mean_diff"]) else unit),
            _interval(r["ci_low"], r["ci_high"]),
            _interval(r["boot_low"], r["boot_high"]),
            {"t": "paired t", "wilcoxon": "Wilcoxon"}.get(r["test"], "–"),
            _p(r["p_holm"]),
            r["verdict"],
        ]
        if notes:
            row.append(_text(r["note"]))
        rows.append(row)
    return headers, rows


def _md_escape(rows: list[list[str]]) -> list[list[str]]:
    return [[c.replace("|", "\\|") for c in row] for row in rows]


_RIGHT = {"MACs kept", "n", "Mean diff", "p (Holm)", "Comparisons", *VERDICTS}


def claims_markdown(results: pd.DataFrame) -> str:
    """The per-comparison table as a GitHub pipe table (with notes)."""
    headers, rows = claims_rows(results)
    return _render(headers, _md_escape(rows), _RIGHT, "md")


def claims_latex(results: pd.DataFrame) -> str:
    """The per-comparison table as a booktabs tabular (notes are in the CSV: too long for a paper table)."""
    headers, rows = claims_rows(results, notes=False)
    return _render(
        headers,
        rows,
        _RIGHT,
        "tex",
        "Mean paired difference (method - versus) over seeds; p Holm-adjusted; notes in claims.csv.",
    )


def overview_markdown(results: pd.DataFrame) -> str:
    """One line per claim: what it says and how many of its comparisons got each verdict."""
    counts = verdict_counts(results)
    headers = ["Claim", "What is claimed", "Comparisons", *VERDICTS]
    rows = [
        [r["claim"], r["text"], str(r["comparisons"]), *(str(r[v]) for v in VERDICTS)]
        for r in counts.to_dict("records")
    ]
    return _render(headers, _md_escape(rows), _RIGHT, "md")


def write_claims_tables(results: pd.DataFrame, tables_dir: str | os.PathLike) -> dict[str, Path]:
    """``claims.{md,tex,csv}`` under ``tables_dir`` (atomically)."""
    tables_dir = Path(tables_dir)
    return {
        "md": atomic_write_text(tables_dir / "claims.md", claims_markdown(results)),
        "tex": atomic_write_text(tables_dir / "claims.tex", claims_latex(results)),
        "csv": atomic_write_text(tables_dir / "claims.csv", results.to_csv(index=False, lineterminator="\n")),
    }


def _as_bool(v: object) -> bool | None:
    if isinstance(v, str):
        return {"true": True, "1": True, "false": False, "0": False}.get(v.strip().lower())
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return bool(v)


def selection_rule_text(summary: pd.DataFrame) -> str:
    """Which state of its search PASS kept, from the summary's ``select_on_val`` column (PASS-family runs)."""
    if "select_on_val" not in summary.columns:
        return "PASS's selection rule: unknown (the summary has no `select_on_val` column)."
    runs = summary[summary["family"].astype("object").isin(PASS_FAMILIES)]
    vals = [b for b in map(_as_bool, runs["select_on_val"]) if b is not None]
    if not vals:
        return "PASS's selection rule: unknown (no PASS-family run records `select_on_val`)."
    k, n = sum(vals), len(vals)
    if k == n:
        return (
            f"PASS kept the hypernetwork state whose structure scored best on the validation split "
            f"(`select_on_val` true in all {n} PASS-family runs)."
        )
    if k == 0:
        return f"PASS kept the final state of its search (`select_on_val` false in all {n} PASS-family runs)."
    return (
        f"PASS's selection rule was mixed: `select_on_val` true in {k} and false in {n - k} of the "
        f"{n} PASS-family runs."
    )


def readme_section(
    results: pd.DataFrame,
    summary: pd.DataFrame,
    claims_file: str,
    links: Sequence[str] = ("tables/claims.tex", "tables/claims.csv"),
    figure: str | None = "figures/claims_forest.png",
) -> list[str]:
    """Lines of the README's ``## Claims`` section: the rule, an overview per claim, the full table."""
    lines = [
        "## Claims",
        "",
        f"The paper's claims (`{claims_file}`) checked against these runs. "
        + decision_rule_text(results)
        + " "
        + selection_rule_text(summary),
        "",
        overview_markdown(results).rstrip("\n"),
        "",
        "Per comparison (differences are `method − versus`):",
        "",
        claims_markdown(results).rstrip("\n"),
        "",
        f"Also as [LaTeX]({links[0]}) and [CSV]({links[1]}) (full precision, raw and adjusted p).",
        "",
    ]
    if figure:
        lines += [f"![Claims: mean paired difference with 95% intervals]({figure})", ""]
    return lines
