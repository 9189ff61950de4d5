"""Result figures (PNG at 150 dpi for the README, PDF for papers).

* accuracy vs MACs -- the trade-off every pruning paper plots;
* top-1 before vs after fine-tuning -- how good the chosen structure is *before* weights adapt, which is
  what a structure search (PASS, its ablations) claims to improve over heuristics;
* layer-wise kept ratio -- where each method removes channels (read from the per-run metrics.json,
  because the tidy summary has no per-group data);
* search cost -- what the better structure costs to find.

Why no ``pyplot``: figures are built as ``matplotlib.figure.Figure`` on an explicit Agg canvas, so
nothing depends on (or changes) the process-wide backend, and a report can be built in a headless job or
inside a notebook alike.  Seaborn provides styling only, applied through context managers so that
global rcParams are left as they were.

Every plotting function raises :class:`NoData` when its input is absent, so the caller can skip the
figure with a note instead of crashing or writing an empty plot.
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..io import atomic_write
from .aggregate import has_source, load_metrics
from .tables import FAMILY_ORDER, dense_mask

MACS_NOTE = "(= 'FLOPs' in pruning papers)"
DPI = 150
PANEL_W, PANEL_H = 4.4, 3.3


class NoData(Exception):
    """A figure's input data are absent; the message says what is missing."""


# ----------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _style() -> Iterator[None]:
    """Seaborn look, scoped: leaves the caller's rcParams untouched."""
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.0):
        yield


def _new_figure(nrows: int, ncols: int, **kw) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(PANEL_W * ncols, PANEL_H * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def save_figure(fig: Figure, out_stem: str | os.PathLike) -> list[Path]:
    """Save ``<stem>.png`` (150 dpi) and ``<stem>.pdf`` atomically.

    PDF creation dates are dropped so that rebuilding an unchanged report gives identical files.
    """
    out_stem = Path(out_stem)
    png = atomic_write(out_stem.with_suffix(".png"), lambda fh: fig.savefig(fh, format="png", dpi=DPI))
    pdf = atomic_write(out_stem.with_suffix(".pdf"),
                       lambda fh: fig.savefig(fh, format="pdf", metadata={"CreationDate": None}))
    return [png, pdf]


def run_labels(df: pd.DataFrame) -> pd.Series:
    """Method name, or ``"<method> (from <source>)"`` for transfer runs, so sources are never merged."""
    src = has_source(df)
    lab = df["method"].astype("object").copy()
    lab[src] = [f"{m} (from {s})" for m, s in zip(df.loc[src, "method"], df.loc[src, "source"])]
    return lab


def _label_order(df: pd.DataFrame) -> list[str]:
    """Methods in the tables' reading order (PASS, ablations, transfer, baselines), then by name."""
    first = df.drop_duplicates("label")
    rank = first["family"].astype("object").map(lambda f: FAMILY_ORDER.get(f, len(FAMILY_ORDER)))
    return list(first.assign(_r=rank).sort_values(["_r", "label"], kind="mergesort")["label"])


def _palette(labels: Sequence[str]) -> dict[str, tuple]:
    colors = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colors))


def _prepare(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["label"] = run_labels(out)
    out["_dense"] = dense_mask(out)
    return out


def _blocks(df: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(df["dataset"], df["arch"])))


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _target_panels(axes: np.ndarray, blocks: Sequence[tuple[str, str]], targets: dict):
    """One row per (dataset, arch), one panel per MACs target: (axes, block, target, column); panels beyond a
    row's targets are hidden."""
    for r, block in enumerate(blocks):
        for c in range(axes.shape[1]):
            if c >= len(targets[block]):
                axes[r, c].set_visible(False)
                continue
            yield axes[r, c], block, targets[block][c], c


def _nan0(v: float) -> float:
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


# ----------------------------------------------------------------------------- (a) accuracy vs MACs
def plot_acc_vs_macs(df: pd.DataFrame, out_stem: str | os.PathLike,
                     x: Literal["macs", "ratio"] = "macs") -> list[Path]:
    """Top-1 after fine-tuning against MACs, one line per method (mean ± std over seeds), dense dashed.

    One panel per (dataset, arch).  ``x="ratio"`` plots the fraction of dense MACs kept instead of MACs.
    """
    d = _prepare(df)
    pruned = d[~d["_dense"]]
    if pruned.empty:
        raise NoData("no pruned runs in the summary")
    if x == "ratio":
        ratio = pd.to_numeric(d["macs_ratio"], errors="coerce") if "macs_ratio" in d.columns else d["target"]
        d["_x"] = ratio.fillna(d["target"])
        xlabel = f"MACs kept, fraction of dense {MACS_NOTE}"
    else:
        d["_x"] = d["macs"] / 1e6
        xlabel = f"MACs (M) {MACS_NOTE}"
    pruned = d[~d["_dense"]]
    blocks = _blocks(pruned)
    labels = _label_order(pruned)
    colors = _palette(labels)
    ncols = min(3, len(blocks))
    with _style():
        fig, axes = _new_figure(math.ceil(len(blocks) / ncols), ncols)
        for ax, (ds, arch) in zip(axes.flat, blocks):
            sub = pruned[(pruned["dataset"] == ds) & (pruned["arch"] == arch)]
            for lab in labels:
                s = sub[sub["label"] == lab]
                if s.empty:
                    continue
                g = s.groupby("target").agg(x=("_x", "mean"), y=("top1", "mean"), e=("top1", "std"))
                g = g.sort_values("x")
                ax.errorbar(g["x"], g["y"], yerr=g["e"].fillna(0.0), marker="o", ms=4, capsize=3,
                            lw=1.4, color=colors[lab], label=lab)
            dense = d[d["_dense"] & (d["dataset"] == ds) & (d["arch"] == arch)]
            if not dense.empty:
                m, sd = dense["top1"].mean(), dense["top1"].std()
                ax.axhline(m, ls="--", color="black", lw=1.1, label=f"dense ({m:.2f}%)")
                if not math.isnan(sd) and sd > 0:
                    ax.axhspan(m - sd, m + sd, color="black", alpha=0.07, lw=0)
            ax.set_title(f"{ds} / {arch}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("Top-1 after fine-tuning (%)")
            ax.legend(fontsize="x-small", loc="lower right")
        _hide_unused(axes, len(blocks))
        return save_figure(fig, out_stem)


# ----------------------------------------------------------------------------- (b) before vs after FT
def plot_before_after(df: pd.DataFrame, out_stem: str | os.PathLike) -> list[Path]:
    """Grouped bars: top-1 before (hatched) and after (solid) fine-tuning per method.

    One row of panels per (dataset, arch), one panel per pruning target; dense accuracy dashed.
    """
    d = _prepare(df)
    pruned = d[~d["_dense"]].dropna(subset=["top1_before_ft", "top1"], how="all")
    if pruned.empty:
        raise NoData("no pruned runs with top-1 before/after fine-tuning")
    blocks = _blocks(pruned)
    targets = {b: sorted(pruned[(pruned["dataset"] == b[0]) & (pruned["arch"] == b[1])]["target"].unique(),
                         reverse=True) for b in blocks}
    ncols = max(len(t) for t in targets.values())
    labels = _label_order(pruned)
    colors = _palette(labels)
    width = 0.38
    with _style():
        fig, axes = _new_figure(len(blocks), ncols, sharey="row")
        for ax, (ds, arch), t, c in _target_panels(axes, blocks, targets):
            dense = d[d["_dense"] & (d["dataset"] == ds) & (d["arch"] == arch)]
            sub = pruned[(pruned["dataset"] == ds) & (pruned["arch"] == arch) & (pruned["target"] == t)]
            present = [lab for lab in labels if (sub["label"] == lab).any()]
            g = sub.groupby("label").agg(b=("top1_before_ft", "mean"), be=("top1_before_ft", "std"),
                                         a=("top1", "mean"), ae=("top1", "std")).reindex(present)
            xs = np.arange(len(present))
            cols = [colors[lab] for lab in present]
            ax.bar(xs - width / 2, g["b"], width, yerr=g["be"].fillna(0.0), color=cols, alpha=0.45,
                   hatch="//", edgecolor=cols, capsize=2)
            ax.bar(xs + width / 2, g["a"], width, yerr=g["ae"].fillna(0.0), color=cols, capsize=2)
            if not dense.empty:
                ax.axhline(dense["top1"].mean(), ls="--", color="black", lw=1.0)
            ax.set_xticks(xs, present, rotation=30, ha="right", fontsize="x-small")
            ax.set_title(f"{ds} / {arch}, {t:.2f} of dense MACs", fontsize="small")
            if c == 0:
                ax.set_ylabel("Top-1 (%)")
        handles = [Patch(facecolor="grey", alpha=0.45, hatch="//", label="before fine-tuning"),
                   Patch(facecolor="grey", label="after fine-tuning")]
        handles.append(Line2D([], [], ls="--", color="black", label="dense"))
        fig.legend(handles=handles, loc="outside upper center", ncols=3, fontsize="small")
        return save_figure(fig, out_stem)


# ----------------------------------------------------------------------------- (c) layer-wise kept ratio
def layerwise_frame(metrics_files: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Per-group kept ratio of every pruned run: columns dataset, arch, target, label, family, seed,
    group_index, group, kept_ratio.  Runs without per-group data (dense) are skipped.

    Group index is the position in the run's ``group_order`` (forward order), so early layers are left.
    """
    recs = []
    for path in metrics_files:
        m = load_metrics(path)
        kept, sizes, order = m.get("kept_channels"), m.get("group_sizes"), m.get("group_order")
        if not (isinstance(kept, dict) and isinstance(sizes, dict) and isinstance(order, list)) or not order:
            continue
        kept = {str(k): v for k, v in kept.items()}
        sizes = {str(k): v for k, v in sizes.items()}
        src = m.get("source")
        label = f"{m['method']} (from {src})" if src else m["method"]
        for i, gid in enumerate(order):
            gid = str(gid)
            if gid not in kept or not sizes.get(gid):
                continue
            recs.append({"dataset": m["dataset"], "arch": m["arch"], "target": float(m["target"]), "label": label,
                         "family": m.get("family"), "seed": m["seed"], "group_index": i, "group": gid,
                         "kept_ratio": kept[gid] / sizes[gid]})
    return pd.DataFrame(recs)


def plot_layerwise(metrics_files: Sequence[str | os.PathLike], out_stem: str | os.PathLike) -> list[Path]:
    """Kept channels / group size per group (x = index in ``group_order``), one line per method.

    One row of panels per (dataset, arch), one panel per target; shading is ± std over seeds.
    """
    if not metrics_files:
        raise NoData("no metrics.json files were given (pass them with `--metrics`)")
    lw = layerwise_frame(metrics_files)
    if lw.empty:
        raise NoData("none of the given metrics.json files has kept_channels/group_sizes/group_order")
    blocks = _blocks(lw)
    targets = {b: sorted(lw[(lw["dataset"] == b[0]) & (lw["arch"] == b[1])]["target"].unique(), reverse=True)
               for b in blocks}
    ncols = max(len(t) for t in targets.values())
    labels = _label_order(lw)
    colors = _palette(labels)
    with _style():
        fig, axes = _new_figure(len(blocks), ncols, sharey=True)
        for ax, (ds, arch), t, c in _target_panels(axes, blocks, targets):
            sub = lw[(lw["dataset"] == ds) & (lw["arch"] == arch) & (lw["target"] == t)]
            for lab in labels:
                s = sub[sub["label"] == lab]
                if s.empty:
                    continue
                g = s.groupby("group_index")["kept_ratio"].agg(["mean", "std"]).sort_index()
                ax.plot(g.index, g["mean"], marker="o", ms=2.5, lw=1.2, color=colors[lab], label=lab)
                std = g["std"].fillna(0.0)
                if (std > 0).any():
                    ax.fill_between(g.index, g["mean"] - std, g["mean"] + std, color=colors[lab], alpha=0.15,
                                    lw=0)
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{ds} / {arch}, {t:.2f} of dense MACs", fontsize="small")
            ax.set_xlabel("group index (forward order)")
            if c == 0:
                ax.set_ylabel("kept channels / group size")
            ax.legend(fontsize="x-small", loc="lower left")
        return save_figure(fig, out_stem)


# ----------------------------------------------------------------------------- (d) search cost
def plot_search_cost(df: pd.DataFrame, out_stem: str | os.PathLike) -> list[Path]:
    """Search wall time per method (bars, mean ± std over seeds), one bar per target, per (dataset, arch).

    A log axis is used when costs span more than ~2 orders of magnitude (e.g. magnitude pruning vs a
    trained hypernetwork); bar values are printed so that near-zero costs stay readable.
    """
    d = _prepare(df)
    pruned = d[~d["_dense"]].dropna(subset=["search_seconds"])
    if pruned.empty:
        raise NoData("no pruned runs with search_seconds")
    blocks = _blocks(pruned)
    labels = _label_order(pruned)
    all_targets = sorted(pruned["target"].unique(), reverse=True)
    tcolors = dict(zip(all_targets, sns.color_palette("crest", len(all_targets))))
    width = 0.8 / len(all_targets)
    ncols = min(3, len(blocks))
    with _style():
        fig, axes = _new_figure(math.ceil(len(blocks) / ncols), ncols)
        for ax, (ds, arch) in zip(axes.flat, blocks):
            sub = pruned[(pruned["dataset"] == ds) & (pruned["arch"] == arch)]
            present = [lab for lab in labels if (sub["label"] == lab).any()]
            xs = np.arange(len(present))
            g = sub.groupby(["label", "target"])["search_seconds"].agg(["mean", "std"])
            for j, t in enumerate(all_targets):
                idx = [i for i, lab in enumerate(present) if (lab, t) in g.index]  # no bar for absent runs
                if not idx:
                    continue
                means = [_nan0(g["mean"][(present[i], t)]) for i in idx]
                stds = [_nan0(g["std"][(present[i], t)]) for i in idx]
                pos = xs[idx] - 0.4 + width * (j + 0.5)
                bars = ax.bar(pos, means, width, yerr=stds, capsize=2, color=tcolors[t], label=f"{t:.2f}")
                ax.bar_label(bars, labels=[f"{v:.3g}" for v in means], fontsize=5, padding=1)
            if (g["mean"] > 0).all() and g["mean"].max() / g["mean"].min() > 100:
                ax.set_yscale("log")  # zero-cost bars would vanish on a log axis, so only when all > 0
            ax.set_xticks(xs, present, rotation=30, ha="right", fontsize="x-small")
            ax.set_title(f"{ds} / {arch}")
            ax.set_ylabel("search time (s)")
            ax.legend(title="MACs kept", fontsize="x-small", title_fontsize="x-small")
        _hide_unused(axes, len(blocks))
        return save_figure(fig, out_stem)
