"""Were the dense models trained to convergence? Their learning curves, a plateau rule, and the README's answer.

Every method of a seed starts from that seed's dense model, so a comparison after long fine-tuning only means
something if the dense model had finished training: otherwise fine-tuning continues an unfinished training and
every method looks alike (issue 21's pilot: 10 epochs of fine-tuning lifted every method above a 3-epoch dense
model that chose its last epoch on every seed). The report therefore shows each dense model's validation top-1
per epoch and judges it by :class:`passprune.settings.PlateauRule` (the best of the last ``window`` epochs
against the best before them).

Where the curves come from: the ``history`` list of each pretraining job's ``metrics.json`` (one record per
epoch from :mod:`passprune.engine`: ``epoch`` counted from 1, ``val_top1``, ``val_loss``, ``train_top1``,
``train_loss``, ``lr``). The report writes them to ``tables/dense_history.csv`` as well, so a committed snapshot,
rebuilt from its own files without the runs' ``metrics.json`` (:mod:`passprune.report.snapshot`), can redraw the
curves and re-judge them.

Written: ``tables/dense_convergence.{csv,md}`` (one row per dense model), ``tables/dense_history.csv`` (one row
per model and epoch) and ``figures/dense_curves.{png,pdf}`` (a panel per dataset/arch, a line per seed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_write_text
from ..settings import LongerRule, PlateauRule
from ..stats.paired import t_interval
from .aggregate import is_dense, load_metrics
from .figures import _new_figure, _style, save_figure
from .tables import _render

MODEL_KEYS: tuple[str, ...] = ("dataset", "arch", "seed", "dense_id")
#: Per-epoch values kept from a history record (those it has).
HISTORY_VALUES: tuple[str, ...] = ("val_top1", "val_loss", "train_top1", "train_loss", "lr")
HISTORY_CSV, TABLE_STEM, FIGURE_STEM = "dense_history.csv", "dense_convergence", "dense_curves"
#: The rule a report applies unless told otherwise (its defaults live in passprune.settings).
DEFAULT_RULE = PlateauRule()
DEFAULT_LONGER = LongerRule()
LONGER_STEM = "dense_longer"


# ----------------------------------------------------------------------------- the curves
def _history_rows(metrics: dict, dense_id: str) -> list[dict]:
    rows = []
    for rec in metrics.get("history") or []:
        if not isinstance(rec, dict) or not _number(rec.get("epoch")) or not _number(rec.get("val_top1")):
            continue
        row = {"dataset": metrics["dataset"], "arch": metrics["arch"], "seed": int(metrics["seed"])}
        row.update(dense_id=dense_id, epoch=int(rec["epoch"]))
        row.update({k: float(rec[k]) for k in HISTORY_VALUES if _number(rec.get(k))})
        rows.append(row)
    return rows


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)


def dense_histories(metrics_files: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per dense model and epoch with a validation top-1, from the pretraining jobs among
    ``metrics_files`` (the others are ignored); ``dense_id`` is the model's folder name. Sorted by model and epoch;
    a model listed twice counts once."""
    rows: list[dict] = []
    seen: set[Path] = set()
    for f in metrics_files:
        path = Path(f).resolve()
        if path in seen:
            continue
        seen.add(path)
        m = load_metrics(f)
        if is_dense(m):
            rows += _history_rows(m, Path(f).parent.name)
    cols = [*MODEL_KEYS, "epoch", *HISTORY_VALUES]
    if not rows:
        return pd.DataFrame(columns=cols)
    frame = pd.DataFrame(rows).reindex(columns=[c for c in cols if c in {k for r in rows for k in r}])
    frame = frame.drop_duplicates(subset=[*MODEL_KEYS, "epoch"], keep="last")
    return frame.sort_values([*MODEL_KEYS, "epoch"], kind="mergesort").reset_index(drop=True)


def read_history(path: str | os.PathLike) -> pd.DataFrame:
    """A ``dense_history.csv`` an earlier build wrote (the columns :func:`dense_histories` gives)."""
    frame = pd.read_csv(path, dtype={"dataset": str, "arch": str, "dense_id": str})
    missing = [c for c in (*MODEL_KEYS, "epoch", "val_top1") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not a dense history table (no column {', '.join(missing)})")
    return frame


# ----------------------------------------------------------------------------- the rule
def plateau_gain(val_top1: Sequence[float], window: int) -> float:
    """Best validation top-1 of the last ``window`` epochs minus the best of the epochs before them (NaN when
    there are ``window`` epochs or fewer: nothing to compare the window with)."""
    v = np.asarray(val_top1, dtype=float)
    if len(v) <= window:
        return float("nan")
    return float(np.nanmax(v[-window:]) - np.nanmax(v[:-window]))


def convergence_table(history: pd.DataFrame, rule: PlateauRule = DEFAULT_RULE) -> pd.DataFrame:
    """One row per dense model: its epochs, best epoch (the first with the highest validation top-1, the one the
    engine keeps), final and best validation top-1, the plateau gain and whether it meets ``rule``
    (``converged``: False too when it has too few epochs to tell; ``judged`` says which)."""
    rows = []
    for key, g in history.groupby(list(MODEL_KEYS), sort=True):
        g = g.sort_values("epoch", kind="mergesort")
        val = g["val_top1"].to_numpy(float)
        gain = plateau_gain(val, rule.window)
        rows.append(
            {
                **dict(zip(MODEL_KEYS, key)),
                "epochs": int(g["epoch"].max()),
                "best_epoch": int(g["epoch"].iloc[int(np.nanargmax(val))]),
                "final_val_top1": float(val[-1]),
                "best_val_top1": float(np.nanmax(val)),
                "plateau_gain": gain,
                "judged": not math.isnan(gain),
                "converged": bool(not math.isnan(gain) and gain < rule.min_gain),
                "plateau_window": rule.window,
                "plateau_min_gain": rule.min_gain,
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the longer-training rule
def longer_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, arch, seed) with dense models of different lengths: the shortest (the one the study's
    methods start from: ``pretrain.convergence_epochs`` must exceed ``pretrain.train.epochs``) against the longest
    (its twin, trained only to test convergence); ``gain`` = twin's best validation top-1 minus the model's."""
    rows = []
    for (ds, arch, seed), g in table.groupby(["dataset", "arch", "seed"], sort=True):
        if g["epochs"].nunique() < 2:
            continue
        g = g.sort_values("epochs", kind="mergesort")
        a, b = g.iloc[0], g.iloc[-1]
        rows.append(
            {
                "dataset": ds,
                "arch": arch,
                "seed": int(seed),
                "epochs": int(a["epochs"]),
                "longer_epochs": int(b["epochs"]),
                "best_val_top1": float(a["best_val_top1"]),
                "longer_best_val_top1": float(b["best_val_top1"]),
                "gain": float(b["best_val_top1"] - a["best_val_top1"]),
                "dense_id": a["dense_id"],
                "longer_dense_id": b["dense_id"],
            }
        )
    return pd.DataFrame(rows)


def longer_summary(longer: pd.DataFrame, rule: LongerRule = DEFAULT_LONGER) -> pd.DataFrame:
    """Per dataset/arch: the mean gain of training longer over seeds, its 95% t-interval and the verdict
    (``converged``: mean gain < ``rule.min_gain``)."""
    rows = []
    for (ds, arch), g in longer.groupby(["dataset", "arch"], sort=True):
        gains = g["gain"].to_numpy(float)
        lo, hi = t_interval(gains)
        mean = float(gains.mean())
        rows.append(
            {
                "dataset": ds,
                "arch": arch,
                "seeds": len(gains),
                "epochs": "/".join(map(str, sorted(set(g["epochs"])))),
                "longer_epochs": "/".join(map(str, sorted(set(g["longer_epochs"])))),
                "mean_gain": mean,
                "ci_low": lo,
                "ci_high": hi,
                "converged": bool(mean < rule.min_gain),
                "min_gain": rule.min_gain,
            }
        )
    return pd.DataFrame(rows)


def _interval(lo: float, hi: float) -> str:
    return "" if math.isnan(lo) else f" [{lo:+.2f}, {hi:+.2f}]"


def longer_verdict(summary: pd.DataFrame) -> str:
    """One sentence per dataset/arch: the mean gain of training longer, with its interval, and the verdict."""
    parts = []
    for r in summary.to_dict("records"):
        verdict = "**converged**" if r["converged"] else "**not converged** (still gaining)"
        parts.append(
            f"{r['dataset']}/{r['arch']}: {r['epochs']} → {r['longer_epochs']} epochs gained {r['mean_gain']:+.2f} "
            f"points{_interval(r['ci_low'], r['ci_high'])} over {r['seeds']} seed(s): {verdict}."
        )
    return " ".join(parts)


def _longer_md(longer: pd.DataFrame) -> str:
    headers = ["Dataset", "Arch", "Seed", "Epochs", "Best val top-1", "Longer twin", "Its best val top-1", "Gain"]
    rows = [
        [
            str(r["dataset"]),
            str(r["arch"]),
            str(int(r["seed"])),
            str(int(r["epochs"])),
            f"{r['best_val_top1']:.2f}",
            f"{int(r['longer_epochs'])} epochs",
            f"{r['longer_best_val_top1']:.2f}",
            f"{r['gain']:+.2f}",
        ]
        for r in longer.to_dict("records")
    ]
    return _render(headers, rows, set(headers[2:]), "md")


def _model(r: dict) -> str:
    return f"{r['dataset']}/{r['arch']} seed {int(r['seed'])}"


def _how_many(k: int, n: int) -> str:
    return "The dense model" if n == 1 else f"{k} of {n} dense models"


def verdict_text(table: pd.DataFrame, rule: PlateauRule) -> str:
    """Whether every dense model met the rule, naming those that did not (with their gain) and those that could
    not be judged (too few epochs)."""
    n = len(table)
    rows = table.to_dict("records")
    failed = [r for r in rows if r["judged"] and not r["converged"]]
    unjudged = [r for r in rows if not r["judged"]]
    parts = []
    if not failed and not unjudged:
        gains = table["plateau_gain"]
        parts.append(
            f"**All {n} dense models met it** (gains {gains.min():+.2f} to {gains.max():+.2f} points)."
            if n > 1
            else f"**The dense model met it** (gain {gains.iloc[0]:+.2f} points)."
        )
    if failed:
        who = "; ".join(f"{_model(r)}: {r['plateau_gain']:+.2f} (best epoch {r['best_epoch']})" for r in failed)
        parts.append(f"**{_how_many(len(failed), n)} did not** (still gaining): {who}.")
    if unjudged:
        epochs = sorted({int(r["epochs"]) for r in unjudged})
        parts.append(
            f"**{_how_many(len(unjudged), n)} could not be judged**: {'/'.join(map(str, epochs))} epoch(s), and "
            f"the rule needs more than {rule.window}."
        )
    if failed or unjudged:
        parts.append("Comparisons after long fine-tuning may then only continue an unfinished training.")
    return " ".join(parts)


# ----------------------------------------------------------------------------- figure
def plot_dense_curves(history: pd.DataFrame, table: pd.DataFrame, out_stem: str | os.PathLike) -> list[Path]:
    """Validation top-1 per epoch of every dense model: a panel per dataset/arch, a line per seed (its best epoch
    marked), the rule's last-epochs window shaded; the legend gives each seed's plateau gain."""
    blocks = list(dict.fromkeys(zip(history["dataset"], history["arch"])))
    cols = min(3, len(blocks))
    rows = math.ceil(len(blocks) / cols)
    window = int(table["plateau_window"].iloc[0])
    with _style():
        fig, axes = _new_figure(rows, cols)
        for ax, (ds, arch) in zip(axes.flat, blocks):
            sub = history[(history["dataset"] == ds) & (history["arch"] == arch)]
            facts = table[(table["dataset"] == ds) & (table["arch"] == arch)]
            _curves_panel(ax, sub, facts)
            last = int(sub["epoch"].max())
            if last > window:
                ax.axvspan(last - window + 0.5, last + 0.5, color="grey", alpha=0.12, lw=0)
            ax.set_title(f"{ds} / {arch}: last {window} epochs shaded", fontsize="small")
            ax.set_xlabel("epoch")
            ax.set_ylabel("validation top-1 (%)")
        for ax in axes.flat[len(blocks) :]:
            ax.set_visible(False)
        return save_figure(fig, out_stem)


def _curves_panel(ax, sub: pd.DataFrame, facts: pd.DataFrame) -> None:
    seeds = sorted(set(int(x) for x in facts["seed"]))
    shortest = facts.groupby("seed")["epochs"].min()
    for r in facts.to_dict("records"):
        color = f"C{seeds.index(int(r['seed'])) % 10}"
        g = sub[(sub["seed"] == r["seed"]) & (sub["dense_id"] == r["dense_id"])].sort_values("epoch")
        gain = "too few epochs" if not r["judged"] else f"gain {r['plateau_gain']:+.2f}"
        mark = "" if not r["judged"] else (" ✓" if r["converged"] else " ✗")
        twin = int(r["epochs"]) > int(shortest[r["seed"]])
        length = "" if facts["seed"].is_unique else f", {int(r['epochs'])} ep"
        label = f"seed {int(r['seed'])}{length}: {gain}{mark}"
        ax.plot(
            g["epoch"],
            g["val_top1"],
            color=color,
            lw=1.0 if twin else 1.2,
            ls="--" if twin else "-",
            marker="o",
            ms=2.0 if twin else 2.5,
            label=label,
        )
        best = g[g["epoch"] == r["best_epoch"]]
        ax.plot(best["epoch"], best["val_top1"], color=color, marker="*", ms=9, mec="white", mew=0.5, lw=0)
    ax.xaxis.get_major_locator().set_params(integer=True)
    title = "★ best epoch" + ("; dashed: longer twin" if not facts["seed"].is_unique else "")
    ax.legend(fontsize="x-small", loc="lower right", title=title, title_fontsize="x-small")


# ----------------------------------------------------------------------------- files and README
def _md(table: pd.DataFrame) -> str:
    headers = ["Dataset", "Arch", "Seed", "Epochs", "Best epoch", "Final val top-1", "Best val top-1"]
    headers += [f"Gain (last {int(table['plateau_window'].iloc[0])})", "Converged"]
    rows = [
        [
            str(r["dataset"]),
            str(r["arch"]),
            str(int(r["seed"])),
            str(int(r["epochs"])),
            str(int(r["best_epoch"])),
            f"{r['final_val_top1']:.2f}",
            f"{r['best_val_top1']:.2f}",
            "–" if not r["judged"] else f"{r['plateau_gain']:+.2f}",
            "cannot tell" if not r["judged"] else "yes" if r["converged"] else "**no**",
        ]
        for r in table.to_dict("records")
    ]
    return _render(headers, rows, set(headers[2:8]), "md")


def stale_files(out_dir: Path) -> list[Path]:
    """Everything :func:`write_dense` writes, so a build without dense curves leaves no earlier copy behind."""
    tables = [out_dir / "tables" / f"{TABLE_STEM}.{x}" for x in ("csv", "md")] + [out_dir / "tables" / HISTORY_CSV]
    tables.append(out_dir / "tables" / f"{LONGER_STEM}.csv")
    return tables + [out_dir / "figures" / f"{FIGURE_STEM}.{x}" for x in ("png", "pdf")]


def write_dense(
    metrics_files: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    rule: PlateauRule = DEFAULT_RULE,
    earlier: str | os.PathLike | None = None,
    longer_rule: LongerRule = DEFAULT_LONGER,
) -> tuple[list[Path], list[str], list[str]]:
    """The dense models' tables and figure under ``out_dir`` from the pretraining jobs among ``metrics_files``
    (else from ``earlier``, a ``dense_history.csv`` of an earlier build, when it exists): ``(paths written, the
    README's opening lines, its section)``. Without any history the files are removed and both say why. When a
    seed has a longer twin (``pretrain.convergence_epochs``), ``longer_rule`` decides and the plateau rule is
    shown for information."""
    out_dir = Path(out_dir)
    history = dense_histories(metrics_files)
    source = "the pretraining jobs' `metrics.json` (`history`)"
    if history.empty and earlier is not None and Path(earlier).is_file():
        history, source = read_history(earlier), "`tables/dense_history.csv`, kept from the build that had them"
    plateau_head = f"Plateau rule: {rule.text()} (`passprune.settings.PlateauRule`)."
    if history.empty:
        for p in stale_files(out_dir):
            p.unlink(missing_ok=True)
        why = (
            "no metrics.json files were given (a summary-only rebuild)"
            if not metrics_files
            else "no pretraining job among the given metrics.json files records a per-epoch validation top-1"
        )
        head = f"**Dense models trained to convergence?** {plateau_head}"
        return [], [f"{head} _Not checked: {why}._", ""], ["## Dense models", "", f"_Skipped: {why}._", ""]
    table = convergence_table(history, rule)
    longer = longer_table(table)
    written = [
        atomic_write_text(out_dir / "tables" / HISTORY_CSV, history.to_csv(index=False, lineterminator="\n")),
        atomic_write_text(out_dir / "tables" / f"{TABLE_STEM}.csv", table.to_csv(index=False, lineterminator="\n")),
        atomic_write_text(out_dir / "tables" / f"{TABLE_STEM}.md", _md(table)),
    ]
    (out_dir / "tables" / f"{LONGER_STEM}.csv").unlink(missing_ok=True)
    if longer.empty:
        opening = f"**Dense models trained to convergence?** {plateau_head} {verdict_text(table, rule)}"
    else:
        written.append(
            atomic_write_text(
                out_dir / "tables" / f"{LONGER_STEM}.csv", longer.to_csv(index=False, lineterminator="\n")
            )
        )
        own = table[~table["dense_id"].isin(set(longer["longer_dense_id"]))]
        opening = (
            f"**Dense models trained to convergence?** Rule: {longer_rule.text()} (`passprune.settings.LongerRule`). "
            f"{longer_verdict(longer_summary(longer, longer_rule))} For information, the {plateau_head[0].lower()}"
            f"{plateau_head[1:-1]}, which a schedule that anneals the learning rate to zero fails by design: "
            f"{verdict_text(own, rule)}"
        )
    written += plot_dense_curves(history, table, out_dir / "figures" / FIGURE_STEM)
    return written, [f"{opening} Curves and tables: section *Dense models*.", ""], _section(table, source, longer)


def _section(table: pd.DataFrame, source: str, longer: pd.DataFrame | None = None) -> list[str]:
    lines = [
        "## Dense models",
        "",
        "Every method of a seed starts from that seed's dense model; a model still improving when its training "
        "stopped makes long fine-tuning a continuation of its training. Validation top-1 per epoch from "
        f"{source}; the plateau gain is the best of the last epochs minus the best before them (the rule and its "
        "verdict open this README).",
        "",
        _md(table).rstrip("\n"),
        "",
        f"Also as [CSV](tables/{TABLE_STEM}.csv); every epoch in [CSV](tables/{HISTORY_CSV}).",
        "",
    ]
    if longer is not None and not longer.empty:
        lines += [
            "Each seed's dense model against its longer twin (same settings, more epochs; trained only to test "
            "convergence, no method starts from it). A one-cycle or cosine schedule ends at a learning rate near "
            "zero, so its last epochs climb whatever the length; whether more epochs still pay shows only here.",
            "",
            _longer_md(longer).rstrip("\n"),
            "",
            f"Also as [CSV](tables/{LONGER_STEM}.csv).",
            "",
        ]
    return lines + [
        "![Dense models: validation top-1 per epoch](figures/dense_curves.png)",
        "",
        "[PDF](figures/dense_curves.pdf)",
        "",
    ]
