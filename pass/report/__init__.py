"""Reporting: turn finished jobs' ``metrics.json`` files into ``summary.csv``, tables, figures and a README.

Why a separate layer: the per-job files are the pipeline's ground truth, and everything a reader sees
(tables, plots, README) is *derived* from them by these pure functions, so a report can always be rebuilt
from the files alone.  The modules deliberately import neither torch nor the rest of ``passprune`` (only
the torch-free :mod:`passprune.stats` and :mod:`passprune.files`), so a report can be regenerated on a laptop
that only has pandas/matplotlib/seaborn/tabulate (+ scipy/statsmodels/jsonschema for the claims).

* :mod:`passprune.report.aggregate` -- metrics.json files -> one tidy row per run (``summary.csv``).
* :mod:`passprune.report.tables` -- mean ± std over seeds, as Markdown, LaTeX (booktabs) and CSV.
  Also the search-cost table (steps, images, seconds per method and target).
* :mod:`passprune.report.figures` -- accuracy vs MACs, before/after fine-tuning, layer-wise kept ratio,
  search cost, claims forest plot (PNG + PDF); methods coloured by family.
* :mod:`passprune.report.verdicts` -- the claims table (:mod:`passprune.stats`' verdicts) and the README
  section that says how verdicts are made.
* :mod:`passprune.report.overlap` -- which channels, not only how many: Jaccard of the kept channels of every
  pair of methods (per seed, per group and overall), from the runs' ``structure.json`` files.
* :mod:`passprune.report.dense` -- were the dense models trained to convergence? Their validation top-1 per
  epoch (from the pretraining jobs' ``history``), a plateau rule (:class:`passprune.settings.PlateauRule`) and
  the README's answer.
* :mod:`passprune.report.build` -- all of the above plus ``README.md`` into one reports folder.
* :mod:`passprune.report.snapshot` -- a committed snapshot (``reports/<study>/``) rebuilt in place from its own
  ``summary.csv``.
"""
