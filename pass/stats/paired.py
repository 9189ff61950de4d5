"""Paired comparisons of two methods over seeds: intervals, tests against a margin, Holm correction.

Why paired: every method of a seed prunes that seed's dense model, so per-seed differences remove the
dense model's seed-to-seed variation, which is often larger than the differences between methods.

Conventions used throughout (``a`` = the claimed method, ``b`` = the method it is compared with):

* ``diff = a - b`` per seed, in the metric's units (top-1 points, or x speed-up).
* **Decision interval: the t-interval** (``scipy.stats.t.interval`` on the differences, df = n - 1).
  With 3-10 seeds the percentile bootstrap under-covers (it resamples only a handful of values and
  has no small-sample correction; with 3 seeds there are just 10 distinct resamples), so it is
  *reported* next to the t-interval as a robustness check but never decides a verdict.  The bootstrap
  is paired (``scipy.stats.bootstrap(..., paired=True)``), percentile method -- BCa's jackknife
  acceleration is itself unstable and returns NaN for degenerate data at these sample sizes -- with a
  fixed generator seed so a report is reproducible.
* **Test**: the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) when the rank test can reject at
  all, else the paired t-test (``scipy.stats.ttest_rel``).  The exact one-sided Wilcoxon p-value is at
  least ``2**-n`` (all n signs agree); its two-sided p-value at least ``2**(1-n)``, which exceeds 0.05
  for n <= 5.  So the rank test is used from :data:`MIN_WILCOXON_N` = 6 seeds, *and* only when
  ``2**-n`` is below Holm's strictest level ``alpha / m`` for a family of ``m`` comparisons
  (:func:`wilcoxon_min_n`): otherwise a study with, say, 40 comparisons and 8 seeds could never
  support anything, whatever the data.  The choice depends on n and m only (the design), never on the
  values.
* **Margins**: a "greater" claim is H1: mean diff > margin (H0: diff <= margin); "less" is its mirror
  with the sides swapped, H1: diff < -margin (a *is below b by more than* the margin); "equivalent"
  is |diff| < margin, tested by two one-sided tests (TOST: H0 diff <= -margin and H0 diff >= margin,
  p = the larger of the two).  Margins shift the data (``a - margin`` vs ``b``) before the scipy test,
  so no test statistic is written by hand here.
* **Multiplicity**: Holm over all comparisons of a study that have a p-value
  (``statsmodels.stats.multitest.multipletests(method="holm")``).  The intervals are *not* adjusted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.stats
from statsmodels.stats.multitest import multipletests

#: Significance level of every test (and 1 - confidence of every interval).
ALPHA = 0.05
#: Fewer paired seeds than this: no verdict ("not enough seeds"); two seeds give a t-interval with
#: df = 1, whose 97.5% quantile (12.7) makes any interval uninformative.
MIN_SEEDS = 3
#: Smallest n at which the Wilcoxon signed-rank test is used (its smallest two-sided p is 2**(1-n),
#: 0.0625 at n = 5 and 0.031 at n = 6); see :func:`wilcoxon_min_n` for the multiplicity condition.
MIN_WILCOXON_N = 6
#: Bootstrap resamples and generator seed (fixed: rebuilding a report gives the same numbers).
BOOTSTRAP_RESAMPLES = 9999
BOOTSTRAP_SEED = 0

Relation = Literal["greater", "less", "equivalent"]
Test = Literal["wilcoxon", "t"]
Alternative = Literal["greater", "less"]


# ----------------------------------------------------------------------------- pairing
@dataclass(frozen=True)
class Aligned:
    """Two methods' values on the seeds both have (``a[i]``, ``b[i]`` belong to ``seeds[i]``)."""

    seeds: tuple[int, ...]
    a: np.ndarray
    b: np.ndarray
    only_a: tuple[int, ...] = ()
    only_b: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def diffs(self) -> np.ndarray:
        return self.a - self.b

    def note(self, name_a: str = "a", name_b: str = "b") -> str:
        """Which seeds were dropped because only one side has them ('' when none)."""
        parts = []
        if self.only_a:
            parts.append(f"seed(s) {', '.join(map(str, self.only_a))} only in {name_a}")
        if self.only_b:
            parts.append(f"seed(s) {', '.join(map(str, self.only_b))} only in {name_b}")
        return ("dropped " + "; ".join(parts)) if parts else ""


def _as_series(values: Mapping[int, float] | pd.Series) -> pd.Series:
    s = values if isinstance(values, pd.Series) else pd.Series(dict(values), dtype=float)
    s = pd.to_numeric(s, errors="coerce").dropna()  # a NaN value is a missing seed, not a number
    if s.index.has_duplicates:
        raise ValueError(f"several values for seed(s) {sorted(set(s.index[s.index.duplicated()]))}")
    s.index = s.index.astype(int)
    return s


def align_by_seed(a: Mapping[int, float] | pd.Series, b: Mapping[int, float] | pd.Series) -> Aligned:
    """Pair two ``{seed: value}`` mappings on their common seeds (sorted); missing or NaN values drop
    that seed, and the dropped seeds are recorded (:meth:`Aligned.note`) so a report can say so."""
    sa, sb = _as_series(a), _as_series(b)
    common = sorted(set(sa.index) & set(sb.index))
    return Aligned(
        seeds=tuple(int(s) for s in common),
        a=sa.loc[common].to_numpy(float) if common else np.empty(0),
        b=sb.loc[common].to_numpy(float) if common else np.empty(0),
        only_a=tuple(sorted(int(s) for s in set(sa.index) - set(sb.index))),
        only_b=tuple(sorted(int(s) for s in set(sb.index) - set(sa.index))),
    )


# ----------------------------------------------------------------------------- intervals
def t_interval(diffs: Sequence[float] | np.ndarray, confidence: float = 1 - ALPHA) -> tuple[float, float]:
    """Two-sided t confidence interval of the mean difference (``scipy.stats.t.interval``, df = n - 1,
    scale = ``scipy.stats.sem``).  NaNs for n < 2; a point when every difference is equal (scipy's
    t distribution rejects scale 0)."""
    d = np.asarray(diffs, float)
    if d.size < 2:
        return (math.nan, math.nan)
    m, se = float(d.mean()), float(scipy.stats.sem(d))
    if se == 0.0:
        return (m, m)
    lo, hi = scipy.stats.t.interval(confidence, d.size - 1, loc=m, scale=se)
    return (float(lo), float(hi))


def _mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x - y, axis=axis)


def _rng_kwargs(seed: int) -> dict:
    """scipy >= 1.15 takes ``rng``; older versions only ``random_state``."""
    import inspect

    params = inspect.signature(scipy.stats.bootstrap).parameters
    return {"rng": np.random.default_rng(seed)} if "rng" in params else {"random_state": seed}


def bootstrap_interval(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 1 - ALPHA,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    method: str = "percentile",
) -> tuple[float, float]:
    """Paired bootstrap interval of mean(a - b) over seeds (``scipy.stats.bootstrap``, ``paired=True``).

    Seeds are resampled with replacement, keeping each seed's pair together.  NaNs for n < 2; a point
    when every difference is equal (every resample then has the same mean).
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2:
        return (math.nan, math.nan)
    d = a - b
    if np.all(d == d[0]):
        return (float(d[0]), float(d[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about near-degenerate resamples at n = 3
        res = scipy.stats.bootstrap(
            (a, b),
            _mean_diff,
            paired=True,
            vectorized=True,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method=method,
            **_rng_kwargs(seed),
        )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


# ----------------------------------------------------------------------------- tests
def wilcoxon_min_n(m_tests: int = 1, alpha: float = ALPHA, floor: int = MIN_WILCOXON_N) -> int:
    """Fewest seeds at which the signed-rank test is used: at least ``floor``, and enough that its
    smallest exact one-sided p-value, ``2**-n``, is below ``alpha / m_tests`` (Holm's first step)."""
    return max(floor, math.floor(math.log2(max(m_tests, 1) / alpha)) + 1)


def choose_test(n: int, m_tests: int = 1, alpha: float = ALPHA) -> Test:
    """``"wilcoxon"`` when ``n >= wilcoxon_min_n(m_tests)``, else ``"t"`` (see the module docstring)."""
    return "wilcoxon" if n >= wilcoxon_min_n(m_tests, alpha) else "t"


def paired_pvalue(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    alternative: Alternative,
    margin: float = 0.0,
    test: Test = "t",
) -> float:
    """One-sided paired p-value against a margin.

    ``alternative="greater"``: H0 mean(a - b) <= margin; ``"less"``: H0 mean(a - b) >= margin.  Computed
    as scipy's paired test of ``a - margin`` against ``b``.  A test that is undefined (all differences
    exactly at the margin: no evidence either way) gives p = 1.
    """
    x, y = np.asarray(a, float) - margin, np.asarray(b, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero differences / zero variance: handled below
        if test == "wilcoxon":
            p = scipy.stats.wilcoxon(x, y, alternative=alternative).pvalue
        elif test == "t":
            p = scipy.stats.ttest_rel(x, y, alternative=alternative).pvalue
        else:
            raise ValueError(f"unknown test {test!r}; use 'wilcoxon' or 't'")
    p = float(p)
    return 1.0 if math.isnan(p) else p


def tost_pvalue(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, margin: float, test: Test = "t"
) -> float:
    """Two one-sided tests for equivalence, |mean(a - b)| < margin: the larger of the p-values of
    H0 diff <= -margin (alternative greater) and H0 diff >= +margin (alternative less)."""
    if margin <= 0:
        raise ValueError(f"an equivalence margin must be > 0, got {margin}")
    return max(paired_pvalue(a, b, "greater", -margin, test), paired_pvalue(a, b, "less", margin, test))


def claim_pvalue(a: np.ndarray, b: np.ndarray, relation: Relation, margin: float, test: Test) -> float:
    """The p-value of a claim's alternative: greater -> diff > margin, less -> diff < -margin,
    equivalent -> TOST within +-margin."""
    if relation == "greater":
        return paired_pvalue(a, b, "greater", margin, test)
    if relation == "less":
        return paired_pvalue(a, b, "less", -margin, test)
    if relation == "equivalent":
        return tost_pvalue(a, b, margin, test)
    raise ValueError(f"unknown relation {relation!r}; use greater, less or equivalent")


def holm(pvalues: Sequence[float] | np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Holm-adjusted p-values (``multipletests(method="holm")``); NaN entries (comparisons without a
    test) stay NaN and do not count towards the family size."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=alpha, method="holm")[1]
    return out


# ----------------------------------------------------------------------------- one comparison
@dataclass(frozen=True)
class PairedResult:
    """One paired comparison.  ``p_value`` is the claim's unadjusted p-value (see :func:`claim_pvalue`);
    NaN intervals/p when there are fewer than two pairs."""

    n: int
    seeds: tuple[int, ...]
    mean_diff: float
    t_ci: tuple[float, float]
    boot_ci: tuple[float, float]
    test: str
    p_value: float
    note: str = ""
    diffs: tuple[float, ...] = field(default=(), repr=False)


def paired_compare(
    a: Mapping[int, float] | pd.Series,
    b: Mapping[int, float] | pd.Series,
    relation: Relation,
    margin: float,
    *,
    m_tests: int = 1,
    alpha: float = ALPHA,
    test: Test | None = None,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    names: tuple[str, str] = ("a", "b"),
) -> PairedResult:
    """Align ``{seed: value}`` of two methods and compute mean difference, both intervals and the
    claim's p-value (test chosen by :func:`choose_test` unless given).  Fewer than two pairs: NaNs."""
    al = align_by_seed(a, b)
    d = al.diffs
    if al.n < 2:
        return PairedResult(
            al.n,
            al.seeds,
            float(d.mean()) if al.n else math.nan,
            (math.nan, math.nan),
            (math.nan, math.nan),
            "",
            math.nan,
            al.note(*names),
            tuple(d),
        )
    test = test or choose_test(al.n, m_tests, alpha)
    return PairedResult(
        n=al.n,
        seeds=al.seeds,
        mean_diff=float(d.mean()),
        t_ci=t_interval(d, 1 - alpha),
        boot_ci=bootstrap_interval(al.a, al.b, 1 - alpha, n_resamples, seed),
        test=test,
        p_value=claim_pvalue(al.a, al.b, relation, margin, test),
        note=al.note(*names),
        diffs=tuple(d),
    )


# ----------------------------------------------------------------------------- verdict
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
NOT_ENOUGH_SEEDS, NO_DATA = "not enough seeds", "no data"


def decide(
    relation: Relation,
    margin: float,
    ci: tuple[float, float],
    p_adjusted: float,
    n: int,
    alpha: float = ALPHA,
    min_seeds: int = MIN_SEEDS,
) -> str:
    """Verdict of one comparison from its decision interval and Holm-adjusted p-value.

    greater: supported when CI low > margin and p_adj < alpha; contradicted when CI high < margin (the
    claimed effect is excluded).  less: the mirror at -margin.  equivalent: supported when the CI lies
    inside (-margin, margin) and the TOST p_adj < alpha; contradicted when it lies entirely outside.
    Everything else is inconclusive; fewer than ``min_seeds`` pairs is "not enough seeds".
    """
    if n < min_seeds:
        return NOT_ENOUGH_SEEDS
    lo, hi = ci
    sig = not math.isnan(p_adjusted) and p_adjusted < alpha
    if relation == "greater":
        if lo > margin and sig:
            return SUPPORTED
        return CONTRADICTED if hi < margin else INCONCLUSIVE
    if relation == "less":
        if hi < -margin and sig:
            return SUPPORTED
        return CONTRADICTED if lo > -margin else INCONCLUSIVE
    if relation == "equivalent":
        if -margin < lo and hi < margin and sig:
            return SUPPORTED
        return CONTRADICTED if (hi <= -margin or lo >= margin) else INCONCLUSIVE
    raise ValueError(f"unknown relation {relation!r}")
