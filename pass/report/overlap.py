"""Which channels, not only how many: the Jaccard overlap of the kept channels of every pair of methods.

Two methods can keep the same number of channels per group (same MACs, same widths) and still keep different
channels, or keep exactly the same ones for a reason that has nothing to do with the data (a control that copies
its reference; a transferred hypernetwork that ranks channels by its mapper rows alone, docs/method.md,
"Transfer").  The tables and figures count channels; this table compares them: per pair of methods at the same
(dataset, arch, target, seed), per dependency group and over all channels, J = |A ∩ B| / |A ∪ B|.

Where the kept channels come from: each run's ``search/structure.json`` next to its ``metrics.json`` (what
fine-tuning pruned); a structure-transfer run has no search of its own, so its structure is the source task's
search of the same method (``<study>/<source>/<arch>/seed<s>/<base_method>/macs<t>/search``).  A structure is
used only when its kept counts per group are the run's own (``kept_channels`` of metrics.json), so a mismatched
file never enters the table.  A summary-only rebuild (the committed snapshots) has no structures: the table is
then skipped with a note.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from ..files import atomic_write_text
from .aggregate import load_metrics
from .tables import FAMILY_ORDER, _render

#: Columns of :func:`overlap_frame` (one row per pair, seed and group; group ``ALL`` = every channel).
OVERLAP_COLUMNS: tuple[str, ...] = (
    "dataset",
    "arch",
    "target",
    "seed",
    "method_a",
    "method_b",
    "group",
    "kept_a",
    "kept_b",
    "shared",
    "union",
    "jaccard",
)
ALL = "all"
STEMS: tuple[str, ...] = ("structure_overlap.csv", "structure_overlap.md")


@dataclass(frozen=True)
class RunStructure:
    """One pruned run's kept channels (``{group: set of channel indices}``) and what identifies it."""

    dataset: str
    arch: str
    target: float
    seed: int
    label: str
    family: str
    copies_reference: bool  # scratch: keeps its reference's channels by construction (only its init differs)
    kept: dict[str, frozenset[int]]


def _structure_path(metrics_file: Path, m: dict[str, Any]) -> Path:
    """The structure.json a run was pruned with: its own search's, or (structure transfer) the source's."""
    run_dir = metrics_file.parent
    run_dir = run_dir.parent if run_dir.name.startswith("ft-") else run_dir  # a fine-tuning budget's folder
    own = run_dir / "search" / "structure.json"
    if own.is_file() or not m.get("source") or len(run_dir.parents) < 5:
        return own
    study, arch_dir, seed_dir = run_dir.parents[4], run_dir.parents[2], run_dir.parents[1]
    base = m.get("base_method") or m["method"]
    return study / str(m["source"]) / arch_dir.name / seed_dir.name / str(base) / run_dir.name / "search" / own.name


def run_structure(metrics_file: str | os.PathLike) -> RunStructure | str:
    """The run's :class:`RunStructure`, or a note saying why it has none (dense run, file absent, mismatch)."""
    path = Path(metrics_file)
    m = load_metrics(path)
    if m.get("stage") == "pretrain" or not isinstance(m.get("kept_channels"), dict):
        return f"{path}: no pruned structure (dense run)"
    sfile = _structure_path(path, m)
    if not sfile.is_file():
        return f"{path}: no {sfile}"
    kept = {
        str(g): frozenset(int(i) for i in v) for g, v in json.loads(sfile.read_text(encoding="utf-8"))["kept"].items()
    }
    counts = {str(g): int(v) for g, v in m["kept_channels"].items()}
    if {g: len(v) for g, v in kept.items()} != counts:
        return f"{path}: {sfile} keeps other channel counts than the run (not the structure it was pruned with)"
    src = m.get("source")
    return RunStructure(
        dataset=str(m["dataset"]),
        arch=str(m["arch"]),
        target=float(m["target"]),
        seed=int(m["seed"]),
        label=f"{m['method']} (from {src})" if src else str(m["method"]),
        family=str(m.get("family") or ""),
        copies_reference=m.get("start_weights") == "scratch",
        kept=kept,
    )


def read_structures(metrics_files: Sequence[str | os.PathLike]) -> tuple[list[RunStructure], list[str]]:
    """Every pruned run's structure, and notes for the pruned runs that have none (dense runs are not noted)."""
    runs, notes = [], []
    for f in metrics_files:
        r = run_structure(f)
        if isinstance(r, RunStructure):
            runs.append(r)
        elif "dense run" not in r:
            notes.append(r)
    return runs, notes


def jaccard(a: frozenset[int] | set[int], b: frozenset[int] | set[int]) -> float:
    """|A ∩ B| / |A ∪ B|; 1.0 for two empty sets (nothing kept by either: the same choice)."""
    union = len(a | b)
    return len(a & b) / union if union else 1.0


def _rank(r: RunStructure) -> tuple[int, str]:
    return FAMILY_ORDER.get(r.family, len(FAMILY_ORDER)), r.label


def _pair_rows(a: RunStructure, b: RunStructure) -> list[dict[str, Any]]:
    """One row per common group of two runs, then the ``all`` row over every channel of those groups."""
    rows, tot = [], [0, 0, 0, 0]
    for g in sorted(set(a.kept) & set(b.kept), key=list(a.kept).index):
        ka, kb = a.kept[g], b.kept[g]
        cells = [len(ka), len(kb), len(ka & kb), len(ka | kb)]
        tot = [x + y for x, y in zip(tot, cells)]
        rows.append(
            {"group": g, **dict(zip(("kept_a", "kept_b", "shared", "union"), cells)), "jaccard": jaccard(ka, kb)}
        )
    rows.append(
        {
            "group": ALL,
            **dict(zip(("kept_a", "kept_b", "shared", "union"), tot)),
            "jaccard": tot[2] / tot[3] if tot[3] else 1.0,
        }
    )
    ident = {
        "dataset": a.dataset,
        "arch": a.arch,
        "target": a.target,
        "seed": a.seed,
        "method_a": a.label,
        "method_b": b.label,
    }
    return [{**ident, **r} for r in rows]


def overlap_frame(runs: Sequence[RunStructure]) -> pd.DataFrame:
    """Every pair of runs at the same (dataset, arch, target, seed): Jaccard per group and over all channels
    (columns :data:`OVERLAP_COLUMNS`), pairs in the tables' reading order (PASS, ablations, transfer, baselines,
    controls)."""
    blocks: dict[tuple, list[RunStructure]] = {}
    for r in runs:
        blocks.setdefault((r.dataset, r.arch, -r.target, r.seed), []).append(r)
    rows = []
    for key in sorted(blocks):
        for a, b in combinations(sorted(blocks[key], key=_rank), 2):
            rows += _pair_rows(a, b)
    return pd.DataFrame(rows, columns=list(OVERLAP_COLUMNS))


def pair_summary(frame: pd.DataFrame, runs: Sequence[RunStructure] = ()) -> pd.DataFrame:
    """One row per pair and seed: overall Jaccard, groups with identical channels, the lowest group Jaccard,
    whether the structures are identical (J = 1 in every group) and whether that holds by construction (a
    ``scratch`` run keeps its reference's channels)."""
    keys = ["dataset", "arch", "target", "seed", "method_a", "method_b"]
    groups = frame[frame["group"] != ALL].groupby(keys, sort=False)["jaccard"]
    out = frame[frame["group"] == ALL].set_index(keys)[["jaccard"]].rename(columns={"jaccard": "jaccard_all"})
    out["groups"] = groups.size()
    out["groups_identical"] = groups.apply(lambda j: int((j == 1.0).sum()))
    out["jaccard_min_group"] = groups.min()
    out["identical"] = out["groups_identical"] == out["groups"]
    copies = {(r.dataset, r.arch, r.target, r.seed, r.label) for r in runs if r.copies_reference}
    out = out.reset_index()
    out["by_construction"] = [
        ident and ((d, a, t, s, ma) in copies or (d, a, t, s, mb) in copies)
        for d, a, t, s, ma, mb, ident in zip(*(out[k] for k in keys), out["identical"])
    ]
    return out


def _md(summary: pd.DataFrame) -> str:
    headers = [
        "Dataset",
        "Arch",
        "MACs kept",
        "Seed",
        "Method A",
        "Method B",
        "Jaccard (all)",
        "Groups identical",
        "Lowest group J",
    ]
    rows = [
        [
            str(r["dataset"]),
            str(r["arch"]),
            f"{r['target']:.2f}",
            str(int(r["seed"])),
            r["method_a"],
            r["method_b"],
            f"{r['jaccard_all']:.3f}",
            f"{int(r['groups_identical'])}/{int(r['groups'])}" + (" (identical)" if r["identical"] else ""),
            f"{r['jaccard_min_group']:.3f}",
        ]
        for r in summary.to_dict("records")
    ]
    return _render(headers, rows, {"MACs kept", "Seed", "Jaccard (all)", "Groups identical", "Lowest group J"}, "md")


def identical_sentence(summary: pd.DataFrame) -> str:
    """The README's flag: which pairs kept exactly the same channels in every group (and which of them by
    construction), or that none did."""
    ident = summary[summary["identical"]]
    if ident.empty:
        return "No two methods kept identical channels (Jaccard 1.0 in every group) at any target and seed."
    parts = []
    for (d, a, t, ma, mb), g in ident.groupby(["dataset", "arch", "target", "method_a", "method_b"], sort=False):
        n_all = int(
            (
                (summary["dataset"] == d)
                & (summary["arch"] == a)
                & (summary["target"] == t)
                & (summary["method_a"] == ma)
                & (summary["method_b"] == mb)
            ).sum()
        )
        seeds = ", ".join(str(int(s)) for s in g["seed"])
        why = " (by construction: scratch keeps its reference's channels)" if g["by_construction"].all() else ""
        parts.append(f"`{ma}` and `{mb}` at {d}/{a}, {t:.2f} (seed {seeds}: {len(g)} of {n_all} seeds){why}")
    return (
        "**Identical structures** (Jaccard 1.0 in every group), so their rows compare the same channels: "
        + "; ".join(parts)
        + ". See docs/method.md (Transfer) for why a transferred hypernetwork can reproduce its source's structure."
    )


def write_overlap(
    metrics_files: Sequence[str | os.PathLike], tables_dir: str | os.PathLike
) -> tuple[list[Path], list[str]]:
    """``structure_overlap.{csv,md}`` and the README section; without any structure both files are removed
    (never an earlier build's table next to a "skipped" note) and the section says why."""
    tables_dir = Path(tables_dir)
    runs, notes = read_structures(metrics_files)
    lines = ["## Structure overlap", ""]
    frame = overlap_frame(runs)
    if frame.empty:
        for name in STEMS:
            (tables_dir / name).unlink(missing_ok=True)
        why = (
            "no metrics.json files were given"
            if not metrics_files
            else "fewer than two runs of one target and seed have a `search/structure.json`"
        )
        return [], lines + [
            f"_Skipped: {why} (a summary-only rebuild, like a committed snapshot, has no structures)._",
            "",
        ]
    summary = pair_summary(frame, runs)
    written = [
        atomic_write_text(tables_dir / "structure_overlap.csv", frame.to_csv(index=False, lineterminator="\n")),
        atomic_write_text(tables_dir / "structure_overlap.md", _md(summary)),
    ]
    lines += [
        "Jaccard index |A ∩ B| / |A ∪ B| of the channels two methods kept, per seed, per dependency group and over "
        "all channels, from each run's `search/structure.json` (a structure transfer's from its source search): "
        "per pair and seed in [Markdown](tables/structure_overlap.md), per group in "
        "[CSV](tables/structure_overlap.csv). Equal widths do not make equal structures: a high Jaccard means the "
        "same channels.",
        "",
        identical_sentence(summary),
        "",
    ]
    if notes:
        lines += [
            f"Runs without a structure ({len(notes)}): "
            + "; ".join(notes[:5])
            + ("; …" if len(notes) > 5 else "")
            + ".",
            "",
        ]
    return written, lines
