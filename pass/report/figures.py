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
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..files import atomic_write
from .aggregate import has_source, load_metrics
from .tables import FAMILY_ORDER, dense_mask, numeric_column, training_outside_search

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
    pdf = atomic_write(
        out_stem.with_suffix(".pdf"), lambda fh: fig.savefig(fh, format="pdf", metadata={"CreationDate": None})
    )
    return [png, pdf]


def save_message_figure(message: str, out_stem: str | os.PathLike) -> list[Path]:
    """A figure holding only ``message``: a report rule declares its figure files, so when there is nothing to
    plot it still writes them, saying why, instead of failing. Call it inside :func:`_style`."""
    fig = Figure(figsize=(7, 1.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center")
    return save_figure(fig, out_stem)


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


@dataclass(frozen=True)
class Style:
    """How one method is drawn: colour (its family's hue, a shade per method), marker and line style."""

    color: tuple
    marker: str
    linestyle: str | tuple


#: (colormap, darkest, lightest) per family: a distinct hue per family, one shade per method inside it.
#: The range avoids the near-white end of each map so every shade stays visible on white.
FAMILY_HUES: dict[str, tuple[str, float, float]] = {
    "dense": ("Greys", 1.0, 0.6),
    "pass": ("Blues", 0.9, 0.55),
    "pass-ablation": ("Purples", 0.95, 0.5),
    "pass-transfer": ("RdPu", 0.6, 0.4),  # pink: the dark end of RdPu is too close to the ablations' purple
    "baseline": ("Oranges", 0.95, 0.45),
    "control": ("Greens", 0.9, 0.5),
}
_OTHER_HUE = ("Greys", 0.85, 0.45)
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
LINESTYLES: tuple = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)), (0, (3, 2, 1, 2)))


def family_of(family: object) -> str:
    """Families the figures colour alike: every ``*-transfer`` is a transfer (``pass-transfer``)."""
    f = str(family) if isinstance(family, str) else ""
    return "pass-transfer" if f.endswith("-transfer") else f


def method_styles(frame: pd.DataFrame) -> dict[str, Style]:
    """A :class:`Style` per ``label`` of ``frame`` (columns ``label``, ``family``).

    Why by family: with a dozen methods, a categorical palette runs out of distinguishable colours and
    says nothing about which lines belong together.  Each family gets its own hue (dense black, PASS
    blue, ablations purple, transfer pink, baselines orange, controls green, anything else grey); inside a
    family, methods differ by shade *and* marker *and* line style, so no two methods share colour and
    marker even when shades are hard to tell apart.
    """
    first = frame.drop_duplicates("label")
    groups: dict[str, list[str]] = {}
    for lab in _label_order(frame):
        fam = family_of(first.loc[first["label"] == lab, "family"].iloc[0])
        groups.setdefault(fam, []).append(lab)
    styles: dict[str, Style] = {}
    for fam, labels in groups.items():
        cmap, dark, light = FAMILY_HUES.get(fam, _OTHER_HUE)
        shades = mpl.colormaps[cmap](np.linspace(dark, light, len(labels)) if len(labels) > 1 else [dark])
        for i, lab in enumerate(labels):
            styles[lab] = Style(tuple(shades[i]), MARKERS[i % len(MARKERS)], LINESTYLES[i % len(LINESTYLES)])
    return styles


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


def _figure_legend(fig: Figure, axes: np.ndarray, order: Sequence[str] = ()) -> None:
    """One legend for the whole figure, outside the panels on the right: with a dozen methods a legend
    inside a panel hides the curves, and repeating it per panel wastes space.  Entries follow ``order``
    (the tables' reading order), whatever panel they first appear in."""
    handles: dict[str, object] = {}
    for ax in axes.flat:
        if ax.get_visible():
            for h, lab in zip(*ax.get_legend_handles_labels()):
                handles.setdefault(lab, h)
    rank = {lab: i for i, lab in enumerate(order)}
    handles = dict(sorted(handles.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    if handles:
        # widen the figure by the legend's width, so the panels keep theirs (x-small text ~ 0.055 in/char)
        fig.set_figwidth(fig.get_figwidth() + 0.8 + 0.055 * max(len(lab) for lab in handles))
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="outside right upper",
            fontsize="x-small",
            handlelength=3.2,
        )


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
def single_target_blocks(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(dataset, arch) blocks whose pruned runs share one MACs target: there the methods' MACs differ by well under
    1% (every method meets the same target), so a curve over MACs would only spread them over a sliver of the x-axis.
    """
    d = df[~dense_mask(df)]
    return [b for b in _blocks(d) if d.loc[(d["dataset"] == b[0]) & (d["arch"] == b[1]), "target"].nunique() == 1]


def plot_acc_vs_macs(df: pd.DataFrame, out_stem: str | os.PathLike, x: Literal["macs", "ratio"] = "macs") -> list[Path]:
    """Top-1 after fine-tuning against MACs, one line per method (mean ± std over seeds), dense dashed.

    One panel per (dataset, arch).  ``x="ratio"`` plots the fraction of dense MACs kept instead of MACs.  A block
    with a single MACs target gets no curve (see :func:`single_target_blocks`): one point per method instead, the
    mean over seeds with its 95% t-interval, and the dense model's 95% interval shaded.
    """
    with _style():
        return save_figure(acc_vs_macs_figure(df, x), out_stem)


def acc_vs_macs_figure(df: pd.DataFrame, x: Literal["macs", "ratio"] = "macs") -> Figure:
    """The figure :func:`plot_acc_vs_macs` saves (apart so that tests can read what was drawn)."""
    d = _prepare(df)
    pruned = d[~d["_dense"]]
    if pruned.empty:
        raise NoData("no pruned runs in the summary")
    xlabel = _set_x(d, x)
    pruned = d[~d["_dense"]]
    blocks = _blocks(pruned)
    single = set(single_target_blocks(df))
    labels = _label_order(pruned)
    styles = method_styles(pruned)
    ncols = min(3, len(blocks))
    with _style():
        fig, axes = _new_figure(math.ceil(len(blocks) / ncols), ncols)
        for ax, (ds, arch) in zip(axes.flat, blocks):
            sub = pruned[(pruned["dataset"] == ds) & (pruned["arch"] == arch)]
            dense = d[d["_dense"] & (d["dataset"] == ds) & (d["arch"] == arch)]
            if (ds, arch) in single:
                _method_points(ax, sub, labels, styles)
                _dense_line(ax, dense, spread="ci95")
                ax.set_title(f"{ds} / {arch}, {sub['target'].iloc[0]:.2f} of dense MACs\n{_seeds_note(sub)}")
                ax.set_ylabel("Top-1 after fine-tuning (%)")
                continue
            _method_lines(ax, sub, labels, styles)
            _dense_line(ax, dense)
            ax.set_title(f"{ds} / {arch}")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("Top-1 after fine-tuning (%)")
        _hide_unused(axes, len(blocks))
        if len(single) < len(blocks):  # the point panels name their methods on the x-axis
            _figure_legend(fig, axes, ["dense", *labels])
        return fig


def _seeds_note(sub: pd.DataFrame) -> str:
    """What a point panel's points are: "mean, 95% CI over 5 seeds" (a range when methods differ)."""
    ns = sorted(set(sub.groupby("label")["seed"].nunique()))
    if ns == [1]:
        return "one seed, no interval"
    return f"mean, 95% CI over {ns[0] if len(ns) == 1 else f'{ns[0]}-{ns[-1]}'} seeds"


def mean_ci95(values: pd.Series) -> tuple[float, float, float]:
    """Mean and 95% t-interval of the mean over seeds (``passprune.stats.paired.t_interval``, df = n - 1); the
    interval is NaN for one seed."""
    from ..stats.paired import t_interval

    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    lo, hi = t_interval(v)
    return float(v.mean()), lo, hi


def _method_points(ax: Axes, sub: pd.DataFrame, labels: list[str], styles: dict[str, Style]) -> None:
    """One point per method at a single MACs target: mean top-1 over seeds with its 95% t-interval, methods along
    the x-axis in the tables' reading order (no interval with one seed)."""
    present = [lab for lab in labels if (sub["label"] == lab).any()]
    for i, lab in enumerate(present):
        m, lo, hi = mean_ci95(sub.loc[sub["label"] == lab, "top1"])
        st = styles[lab]
        yerr = None if math.isnan(lo) else [[m - lo], [hi - m]]
        ax.errorbar([i], [m], yerr=yerr, marker=st.marker, ms=5, capsize=3, lw=1.3, color=st.color, label=lab)
    ticks = [lab.replace(" (from ", "\n(from ") for lab in present]  # transfer labels are long
    ax.set_xticks(np.arange(len(present)), ticks, rotation=35, ha="right", fontsize="x-small")
    ax.set_xlim(-0.6, len(present) - 0.4)
    ax.grid(axis="x", visible=False)


def _set_x(d: pd.DataFrame, x: Literal["macs", "ratio"]) -> str:
    """Put the x coordinate in ``d["_x"]`` and return its axis label. The ratio is the measured fraction of dense
    MACs kept where the summary has it, the target otherwise, so older summaries still plot."""
    if x == "ratio":
        ratio = pd.to_numeric(d["macs_ratio"], errors="coerce") if "macs_ratio" in d.columns else d["target"]
        d["_x"] = ratio.fillna(d["target"])
        return f"MACs kept, fraction of dense {MACS_NOTE}"
    d["_x"] = d["macs"] / 1e6
    return f"MACs (M) {MACS_NOTE}"


def _method_lines(ax: Axes, sub: pd.DataFrame, labels: list[str], styles: dict[str, Style]) -> None:
    """One errorbar line per method in one panel: mean ± std over seeds at each target, in the shared label order
    and styles so a method looks the same in every panel and figure."""
    for lab in labels:
        s = sub[sub["label"] == lab]
        if s.empty:
            continue
        g = s.groupby("target").agg(x=("_x", "mean"), y=("top1", "mean"), e=("top1", "std"))
        g = g.sort_values("x")
        st = styles[lab]
        ax.errorbar(
            g["x"],
            g["y"],
            yerr=g["e"].fillna(0.0),
            marker=st.marker,
            ls=st.linestyle,
            ms=4.5,
            capsize=2.5,
            lw=1.3,
            color=st.color,
            label=lab,
        )


def _dense_line(ax: Axes, dense: pd.DataFrame, spread: Literal["std", "ci95"] = "std") -> None:
    """The dense model's mean top-1 as a dashed line with its value written on it and ± std (or, next to points
    drawn with 95% intervals, its own 95% t-interval) shaded: the level every pruned method is judged against."""
    if dense.empty:
        return
    m, sd = dense["top1"].mean(), dense["top1"].std()
    if spread == "ci95":
        _, lo, hi = mean_ci95(dense["top1"])
        sd = (hi - lo) / 2
    ax.axhline(m, ls="--", color="black", lw=1.1, label="dense")
    ax.text(
        0.01,
        m,
        f"dense {m:.2f}%",
        transform=ax.get_yaxis_transform(),
        va="bottom",
        fontsize="x-small",
        bbox={"fc": "white", "ec": "none", "alpha": 0.75, "pad": 0.6},
    )
    if not math.isnan(sd) and sd > 0:
        ax.axhspan(m - sd, m + sd, color="black", alpha=0.07, lw=0)


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
    targets = {
        b: sorted(pruned[(pruned["dataset"] == b[0]) & (pruned["arch"] == b[1])]["target"].unique(), reverse=True)
        for b in blocks
    }
    ncols = max(len(t) for t in targets.values())
    labels = _label_order(pruned)
    styles = method_styles(pruned)
    width = 0.38
    with _style():
        fig, axes = _new_figure(len(blocks), ncols, sharey="row")
        for ax, (ds, arch), t, c in _target_panels(axes, blocks, targets):
            dense = d[d["_dense"] & (d["dataset"] == ds) & (d["arch"] == arch)]
            sub = pruned[(pruned["dataset"] == ds) & (pruned["arch"] == arch) & (pruned["target"] == t)]
            present = [lab for lab in labels if (sub["label"] == lab).any()]
            g = (
                sub.groupby("label")
                .agg(b=("top1_before_ft", "mean"), be=("top1_before_ft", "std"), a=("top1", "mean"), ae=("top1", "std"))
                .reindex(present)
            )
            xs = np.arange(len(present))
            cols = [styles[lab].color for lab in present]
            ax.bar(
                xs - width / 2,
                g["b"],
                width,
                yerr=g["be"].fillna(0.0),
                color=cols,
                alpha=0.45,
                hatch="//",
                edgecolor=cols,
                capsize=2,
            )
            ax.bar(xs + width / 2, g["a"], width, yerr=g["ae"].fillna(0.0), color=cols, capsize=2)
            if not dense.empty:
                ax.axhline(dense["top1"].mean(), ls="--", color="black", lw=1.0)
            ax.set_xticks(xs, present, rotation=30, ha="right", fontsize="x-small")
            ax.set_title(f"{ds} / {arch}, {t:.2f} of dense MACs", fontsize="small")
            if c == 0:
                ax.set_ylabel("Top-1 (%)")
        handles = [
            Patch(facecolor="grey", alpha=0.45, hatch="//", label="before fine-tuning"),
            Patch(facecolor="grey", label="after fine-tuning"),
        ]
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
            recs.append(
                {
                    "dataset": m["dataset"],
                    "arch": m["arch"],
                    "target": float(m["target"]),
                    "label": label,
                    "family": m.get("family"),
                    "seed": m["seed"],
                    "group_index": i,
                    "group": gid,
                    "kept_ratio": kept[gid] / sizes[gid],
                }
            )
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
    targets = {
        b: sorted(lw[(lw["dataset"] == b[0]) & (lw["arch"] == b[1])]["target"].unique(), reverse=True) for b in blocks
    }
    ncols = max(len(t) for t in targets.values())
    labels = _label_order(lw)
    styles = method_styles(lw)
    with _style():
        fig, axes = _new_figure(len(blocks), ncols, sharey=True)
        for ax, (ds, arch), t, c in _target_panels(axes, blocks, targets):
            sub = lw[(lw["dataset"] == ds) & (lw["arch"] == arch) & (lw["target"] == t)]
            for lab in labels:
                s = sub[sub["label"] == lab]
                if s.empty:
                    continue
                g = s.groupby("group_index")["kept_ratio"].agg(["mean", "std"]).sort_index()
                st = styles[lab]
                ax.plot(g.index, g["mean"], marker=st.marker, ls=st.linestyle, ms=3, lw=1.2, color=st.color, label=lab)
                std = g["std"].fillna(0.0)
                if (std > 0).any():
                    ax.fill_between(
                        g.index,
                        g["mean"] - std,
                        g["mean"] + std,
                        color=st.color,
                        alpha=0.12 if len(labels) <= 6 else 0.05,
                        lw=0,
                    )
            ax.set_ylim(0, 1.05)
            ax.set_title(f"{ds} / {arch}, {t:.2f} of dense MACs", fontsize="small")
            ax.set_xlabel("group index (forward order)")
            if c == 0:
                ax.set_ylabel("kept channels / group size")
        _figure_legend(fig, axes, labels)
        return save_figure(fig, out_stem)


# ----------------------------------------------------------------------------- (d) search cost
#: The parts of a run's training steps, bottom to top of a stacked bar: (column of :func:`cost_parts`, legend, colour).
COST_PARTS: tuple[tuple[str, str, str], ...] = (
    ("search_only", "search steps (no weight update: PASS's hypernetwork, Taylor's passes)", "#4c72b0"),
    ("weight_train", "weight training (sparsity training in the search; scratch's own training)", "#dd8452"),
    ("finetune", "shared fine-tuning", "#8c8c8c"),
)


def cost_parts(df: pd.DataFrame) -> pd.DataFrame:
    """Per run, its training steps split into :data:`COST_PARTS` (their sum is ``total_steps`` of the search-cost
    table): search steps that train no weights, weight training (counted once, whether in or after the search)
    and fine-tuning; ``outside`` is the part of the weight training done after the search.  NaN where the summary
    did not record the steps."""
    weight, outside = numeric_column(df, "weight_train_steps"), training_outside_search(df)
    return pd.DataFrame(
        {
            "search_only": numeric_column(df, "search_steps") - (weight - outside),  # minus training in the search
            "weight_train": weight,
            "finetune": numeric_column(df, "finetune_steps"),
            "outside": outside,
        },
        index=df.index,
    )


def plot_search_cost(df: pd.DataFrame, out_stem: str | os.PathLike) -> list[Path]:
    """Per (dataset, arch), two panels: the training steps each method's result cost (stacked: search, weight
    training, fine-tuning; mean over seeds) and its search wall time (bars, mean ± std over seeds).

    Why the steps: wall time of the search alone hides what some methods spend outside it -- ``scratch`` searches
    nothing (~0 s) but trains the dense model's whole budget again; steps count it, and are comparable across
    machines.  The seconds bars of such methods say how many training steps they add.  One bar per target.  A log
    axis is used when search times span more than ~2 orders of magnitude; bar values are printed so that near-zero
    costs stay readable.
    """
    d = _prepare(df)
    pruned = d[~d["_dense"]].dropna(subset=["search_seconds"])
    if pruned.empty:
        raise NoData("no pruned runs with search_seconds")
    pruned = pd.concat([pruned, cost_parts(pruned)], axis=1)
    blocks = _blocks(pruned)
    labels = _label_order(pruned)
    all_targets = sorted(pruned["target"].unique(), reverse=True)
    with _style():
        fig, axes = _new_figure(len(blocks), 2)
        # a dozen methods x targets need room for their value labels: ~0.3 in per bar
        fig.set_figwidth(2 * max(PANEL_W, 0.3 * len(labels) * len(all_targets)))
        for (ax_steps, ax_secs), (ds, arch) in zip(axes, blocks):
            sub = pruned[(pruned["dataset"] == ds) & (pruned["arch"] == arch)]
            present = [lab for lab in labels if (sub["label"] == lab).any()]
            _cost_steps(ax_steps, sub, present, all_targets)
            _cost_seconds(ax_secs, sub, present, all_targets)
            for ax in (ax_steps, ax_secs):
                ax.set_title(f"{ds} / {arch}")
        return save_figure(fig, out_stem)


def _bar_positions(
    present: list[str], all_targets: list[float], t: float, sub: pd.DataFrame
) -> tuple[list, np.ndarray]:
    """Indices of the methods with runs at target ``t`` and their bars' x positions (one slot per target)."""
    width = 0.8 / len(all_targets)
    idx = [i for i, lab in enumerate(present) if ((sub["label"] == lab) & (sub["target"] == t)).any()]
    return idx, np.arange(len(present))[idx] - 0.4 + width * (all_targets.index(t) + 0.5)


def _cost_steps(ax: Axes, sub: pd.DataFrame, present: list[str], all_targets: list[float]) -> None:
    """Stacked bars of :data:`COST_PARTS` (mean over seeds), the total printed on top (with the target when there
    are several); a panel note when the summary has no step counts."""
    width = 0.8 / len(all_targets)
    g = sub.groupby(["label", "target"])[[c for c, _, _ in COST_PARTS]].mean()
    if g.isna().all().all():
        ax.text(0.5, 0.5, "training steps not recorded by these runs", ha="center", va="center", transform=ax.transAxes)
    else:  # headroom above the tallest bar for the legend
        ax.set_ylim(0, 1.6 * max(1.0, float(g.fillna(0.0).sum(axis=1).max())))
    for t in all_targets:
        idx, pos = _bar_positions(present, all_targets, t, sub)
        if not idx:
            continue
        bottom = np.zeros(len(idx))
        for col, legend, color in COST_PARTS:
            vals = np.array([_nan0(g[col].get((present[i], t))) for i in idx])
            ax.bar(pos, vals, width, bottom=bottom, color=color, label=legend if t == all_targets[0] else None)
            bottom += vals
        at = f"{t:.2f}: " if len(all_targets) > 1 else ""
        ax.bar_label(ax.containers[-1], labels=[f"{at}{v:,.0f}" for v in bottom], fontsize=5, padding=1)
    ax.set_xticks(np.arange(len(present)), present, rotation=30, ha="right", fontsize="x-small")
    ax.set_ylabel("training steps (mean over seeds)")
    ax.legend(fontsize="x-small", loc="upper left")


def _cost_seconds(ax: Axes, sub: pd.DataFrame, present: list[str], all_targets: list[float]) -> None:
    """Search wall time bars (mean ± std over seeds), one colour per target; a method that trains outside its
    search (scratch) has its extra training steps written on its bar, since its seconds were not timed here."""
    tcolors = dict(zip(all_targets, sns.color_palette("crest", len(all_targets))))
    width = 0.8 / len(all_targets)
    g = sub.groupby(["label", "target"]).agg(
        mean=("search_seconds", "mean"), std=("search_seconds", "std"), outside=("outside", "mean")
    )
    for t in all_targets:
        idx, pos = _bar_positions(present, all_targets, t, sub)
        if not idx:
            continue
        means = [_nan0(g["mean"][(present[i], t)]) for i in idx]
        stds = [_nan0(g["std"][(present[i], t)]) for i in idx]
        extra = [_nan0(g["outside"][(present[i], t)]) for i in idx]
        bars = ax.bar(pos, means, width, yerr=stds, capsize=2, color=tcolors[t], label=f"{t:.2f}")
        text = [f"{v:.3g}" + (f"\n+{e:,.0f} train steps" if e > 0 else "") for v, e in zip(means, extra)]
        ax.bar_label(bars, labels=text, fontsize=5, padding=1)
    if (g["mean"] > 0).all() and g["mean"].max() / g["mean"].min() > 100:
        ax.set_yscale("log")  # zero-cost bars would vanish on a log axis, so only when all > 0
    ax.set_xticks(np.arange(len(present)), present, rotation=30, ha="right", fontsize="x-small")
    ax.set_ylabel("search time (s)")
    ax.legend(title="MACs kept", fontsize="x-small", title_fontsize="x-small")


# ----------------------------------------------------------------------------- (e) claims forest plot
#: Colour of each verdict in the forest plot ("no data" rows have no estimate and are not drawn).
VERDICT_COLORS: dict[str, str] = {
    "supported": "#2e7d32",
    "contradicted": "#c62828",
    "inconclusive": "#e69f00",
    "not enough seeds": "#9e9e9e",
}
_UNIT_LABELS = {"points": "top-1 points", "x": "× speed-up at matched top-1"}


def margin_lines(relation: str, margin: float) -> list[float]:
    """Where a claim's margin sits on the difference axis: +margin (greater), -margin (less), both
    (equivalent)."""
    return {"greater": [margin], "less": [-margin], "equivalent": [-margin, margin]}.get(relation, [])


def _forest_label(row: pd.Series) -> str:
    where = f"{row['dataset']}/{row['arch']}"
    at = "curve" if pd.isna(row["target"]) else f"{float(row['target']):.2f}"
    at += f" · FT {row['budget']}" if "budget" in row.index else ""  # claims judged per fine-tuning budget
    return f"{row['claim']}: {row['method']} − {row['versus']} · {where} · {at} (n={int(row['n'])})"


def plot_claims_forest(results: pd.DataFrame, out_stem: str | os.PathLike) -> list[Path]:
    """Forest plot of the claims (:func:`passprune.stats.evaluate_claims`' rows): per comparison, the
    mean paired difference (dot) with its 95% t-interval (thick, decides the verdict) and paired
    bootstrap interval (thin, below), the claimed margin as a dashed tick, coloured by verdict.

    One panel per unit (top-1 points, x speed-up), since the two cannot share an axis.  Comparisons
    without an estimate ("no data") are left out; if none has one, the figure says so instead of
    failing, so a report rule that declares this file always gets it.
    """
    from ..stats.claims import base_verdict  # scipy/statsmodels: only the claims need them

    r = results[pd.to_numeric(results["mean_diff"], errors="coerce").notna()]
    units = [u for u in _UNIT_LABELS if (r["unit"] == u).any()]
    with _style():
        if not units:
            return save_message_figure("No claim comparison has paired seeds (see the claims table).", out_stem)
        counts = [int((r["unit"] == u).sum()) for u in units]
        fig = Figure(figsize=(9.5, 1.3 + 0.3 * sum(counts) + 0.9 * len(units)), layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(units), 1, squeeze=False, gridspec_kw={"height_ratios": [c + 1.5 for c in counts]})
        for ax, unit in zip(axes[:, 0], units):
            sub = r[r["unit"] == unit].reset_index(drop=True)
            ys = np.arange(len(sub))[::-1].astype(float)
            shade, prev = False, None
            for y, (_, row) in zip(ys, sub.iterrows()):
                if row["claim"] != prev:  # alternate a light band per claim so rows group visually
                    shade, prev = not shade, row["claim"]
                if shade:
                    ax.axhspan(y - 0.5, y + 0.5, color="black", alpha=0.04, lw=0)
                col = VERDICT_COLORS.get(base_verdict(row["verdict"]), "black")
                if pd.notna(row["boot_low"]):
                    ax.plot([row["boot_low"], row["boot_high"]], [y - 0.25] * 2, color=col, lw=1.0, alpha=0.7)
                if pd.notna(row["ci_low"]):
                    ax.plot([row["ci_low"], row["ci_high"]], [y, y], color=col, lw=2.4, solid_capstyle="butt")
                ax.plot([row["mean_diff"]], [y], marker="o", ms=5.5, color=col, mec="white", mew=0.6)
                for m in margin_lines(row["relation"], float(row["margin"])):
                    ax.plot([m, m], [y - 0.42, y + 0.42], color="black", lw=1.1, ls=(0, (2, 1.5)))
            ax.axvline(0, color="grey", lw=0.8, zorder=0)
            ax.set_yticks(ys, [_forest_label(row) for _, row in sub.iterrows()], fontsize="x-small")
            ax.set_ylim(-0.7, len(sub) - 0.3)
            ax.grid(axis="y", visible=False)
            ax.set_xlabel(f"mean paired difference, method − versus ({_UNIT_LABELS[unit]})")
        handles = [
            Line2D([], [], color=c, lw=2.4, marker="o", label=v)
            for v, c in VERDICT_COLORS.items()
            if (r["verdict"].map(base_verdict) == v).any()
        ]
        handles += [
            Line2D([], [], color="grey", lw=2.4, label="95% t-interval (decides)"),
            Line2D([], [], color="grey", lw=1.0, alpha=0.7, label="95% paired bootstrap"),
            Line2D([], [], color="black", lw=1.1, ls=(0, (2, 1.5)), label="claimed margin"),
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=4, fontsize="x-small")
        return save_figure(fig, out_stem)
