"""Statistics that turn multi-seed results into verdicts on the paper's claims (torch-free).

Every method of a seed prunes that seed's dense model and is fine-tuned with the same budget, so two
methods' results are *paired by seed*: the unit of evidence is the per-seed difference, and seed-to-seed
variation of the dense model cancels out.

* :mod:`passprune.stats.paired` -- paired differences: confidence intervals (t and bootstrap), paired
  tests against a margin (one-sided and TOST), Holm correction.  Only scipy/statsmodels statistics.
* :mod:`passprune.stats.claims` -- a claims YAML file (validated against
  ``workflow/schemas/claims.schema.yaml``) evaluated against ``summary.csv`` into one verdict per
  (claim, dataset, arch, target).
"""

from .claims import (
    VERDICTS,
    Claim,
    ClaimsError,
    decision_rule_text,
    evaluate_claims,
    load_claims,
    matched_level,
    speedup_at_accuracy,
    validate_claims,
    verdict_counts,
)
from .paired import (
    ALPHA,
    MIN_SEEDS,
    MIN_WILCOXON_N,
    PairedResult,
    align_by_seed,
    bootstrap_interval,
    choose_test,
    decide,
    holm,
    paired_compare,
    paired_pvalue,
    t_interval,
    tost_pvalue,
    wilcoxon_min_n,
)

__all__ = [
    "ALPHA",
    "MIN_SEEDS",
    "MIN_WILCOXON_N",
    "VERDICTS",
    "Claim",
    "ClaimsError",
    "PairedResult",
    "align_by_seed",
    "bootstrap_interval",
    "choose_test",
    "decide",
    "decision_rule_text",
    "evaluate_claims",
    "holm",
    "load_claims",
    "matched_level",
    "paired_compare",
    "paired_pvalue",
    "speedup_at_accuracy",
    "t_interval",
    "tost_pvalue",
    "validate_claims",
    "verdict_counts",
    "wilcoxon_min_n",
]
