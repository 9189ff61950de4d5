"""Rebuild a committed report snapshot (``reports/<study>/``) from its own ``summary.csv``.

A snapshot is a finished study's report copied into the repository (``scripts/snapshot.sh``).  When the report
code changes how a table or figure is made, the snapshot is rebuilt in place from the summary it holds, with the
same builder (:func:`passprune.report.build.build_report`) and the claims file its README names, so the committed
numbers and their presentation never drift apart.  Two things a summary cannot redo are carried over:

* the layer-wise figure, drawn from the runs' ``metrics.json`` files (kept as it is, and the README says so);
* ``NOTES.md`` in the snapshot folder, hand-written facts about the snapshot (e.g. methods renamed after it ran),
  which open the README.

Usage: ``python -m passprune.report.snapshot reports/claims-5seeds [--claims config/claims.yaml]``.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from .build import build_report

#: Figures a summary-only rebuild cannot draw; their committed copies stay.
FROM_RUN_FILES: tuple[str, ...] = ("layerwise_sparsity",)
NOTES = "NOTES.md"
_CLAIMS_REF = re.compile(r"The paper's claims \(`([^`]+)`\)")


def claims_of(folder: str | os.PathLike) -> str | None:
    """The claims file the snapshot's README was built with (``None`` when it has no claims section)."""
    readme = Path(folder) / "README.md"
    m = _CLAIMS_REF.search(readme.read_text(encoding="utf-8")) if readme.is_file() else None
    return m.group(1) if m else None


def rebuild_snapshot(folder: str | os.PathLike, claims: str | os.PathLike | None = None) -> list[Path]:
    """Rebuild ``folder``'s tables, figures and README from ``folder/summary.csv`` (claims: ``claims``, else the
    file its README names; paths relative to the working directory, the repository root)."""
    folder = Path(folder)
    if not (folder / "summary.csv").is_file():
        raise FileNotFoundError(f"{folder}: no summary.csv (not a report snapshot)")
    claims = claims or claims_of(folder)
    notes = (folder / NOTES).read_text(encoding="utf-8") if (folder / NOTES).is_file() else ""
    return build_report(folder / "summary.csv", folder, claims=claims, keep_figures=FROM_RUN_FILES, notes=notes)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m passprune.report.snapshot", description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", help="snapshot folders (reports/<study>)")
    ap.add_argument("--claims", help="claims YAML (default: the one each README names)")
    a = ap.parse_args(argv)
    for f in a.folders:
        paths = rebuild_snapshot(f, a.claims)
        print(f"{f}: {len(paths)} files rebuilt")


if __name__ == "__main__":
    main()
