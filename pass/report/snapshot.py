"""Rebuild a committed report snapshot (``reports/<study>/``) from its own ``summary.csv``.

A snapshot is a finished study's report copied into the repository (``scripts/snapshot.sh``).  When the report
code changes how a table or figure is made, the snapshot is rebuilt in place from the summary it holds, with the
same builder (:func:`passprune.report.build.build_report`) and the claims file its README names, so the committed
numbers and their presentation never drift apart.  Three things a summary cannot redo are carried over:

* the layer-wise figure, drawn from the runs' ``metrics.json`` files (kept as it is, and the README says so);
* the dense models' learning curves, redrawn and re-judged from the snapshot's own ``tables/dense_history.csv``;
* ``NOTES.md`` in the snapshot folder, hand-written facts about the snapshot (e.g. methods renamed after it ran),
  which open the README.

With ``--runs-from DIR`` the runs' files are read after all: the ``metrics.json`` files the summary's
``metrics_file`` column names, under ``DIR`` (the checkout the study ran in), so the layer-wise figure, the
structure overlap and the dense curves are drawn from them (every file must exist).

Usage: ``python -m passprune.report.snapshot reports/claims-5seeds [--claims config/claims.yaml]
[--runs-from /path/to/checkout]``.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from .aggregate import read_summary
from .build import build_report
from .dense import HISTORY_CSV

#: Figures a summary-only rebuild cannot draw; their committed copies stay.
FROM_RUN_FILES: tuple[str, ...] = ("layerwise_sparsity",)
NOTES = "NOTES.md"
_CLAIMS_REF = re.compile(r"The paper's claims \(`([^`]+)`\)")


def claims_of(folder: str | os.PathLike) -> str | None:
    """The claims file the snapshot's README was built with (``None`` when it has no claims section)."""
    readme = Path(folder) / "README.md"
    m = _CLAIMS_REF.search(readme.read_text(encoding="utf-8")) if readme.is_file() else None
    return m.group(1) if m else None


def run_files(summary_csv: str | os.PathLike, root: str | os.PathLike) -> list[Path]:
    """The ``metrics.json`` of every row of ``summary_csv``, its ``metrics_file`` column taken relative to ``root``
    (absolute paths as they are). A missing file is an error naming it, not a silently shorter report."""
    df = read_summary(summary_csv)
    if "metrics_file" not in df.columns:
        raise ValueError(f"{summary_csv}: no metrics_file column, so its runs' files cannot be found")
    files = [Path(root) / str(f) for f in dict.fromkeys(df["metrics_file"].dropna())]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(files)} metrics.json files named by {summary_csv} are not under {root} "
            f"(first: {missing[0]}); give --runs-from the checkout the study ran in"
        )
    return files


def rebuild_snapshot(
    folder: str | os.PathLike, claims: str | os.PathLike | None = None, runs_from: str | os.PathLike | None = None
) -> list[Path]:
    """Rebuild ``folder``'s tables, figures and README from ``folder/summary.csv`` (claims: ``claims``, else the
    file its README names; paths relative to the working directory, the repository root); with ``runs_from``,
    also from the runs' ``metrics.json`` files under that folder (:func:`run_files`)."""
    folder = Path(folder)
    if not (folder / "summary.csv").is_file():
        raise FileNotFoundError(f"{folder}: no summary.csv (not a report snapshot)")
    claims = claims or claims_of(folder)
    notes = (folder / NOTES).read_text(encoding="utf-8") if (folder / NOTES).is_file() else ""
    files = run_files(folder / "summary.csv", runs_from) if runs_from is not None else []
    return build_report(
        folder / "summary.csv",
        folder,
        metrics_files=files,
        claims=claims,
        keep_figures=FROM_RUN_FILES,
        notes=notes,
        dense_history=folder / "tables" / HISTORY_CSV,
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m passprune.report.snapshot", description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="snapshot folders (reports/<study>)")
    ap.add_argument("--claims", help="claims YAML (default: the one each README names)")
    ap.add_argument(
        "--runs-from",
        metavar="DIR",
        help="also read the runs' metrics.json files (the summary's metrics_file paths) under DIR, the checkout "
        "the study ran in: layer-wise figure, structure overlap and dense curves are then drawn from them",
    )
    a = ap.parse_args(argv)
    for f in a.folders:
        paths = rebuild_snapshot(f, a.claims, a.runs_from)
        print(f"{f}: {len(paths)} files rebuilt")


if __name__ == "__main__":
    main()
