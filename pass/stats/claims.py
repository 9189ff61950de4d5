"""The paper's claims as data, checked against ``summary.csv``: one verdict per comparison.

A claims file (``config/claims.yaml``, validated against ``workflow/schemas/claims.schema.yaml``) lists
claims such as "PASS beats the best baseline by >= 1 point at equal MACs".  Each claim is turned into
one *comparison* per (dataset, arch, MACs target) -- per (dataset, arch) for the speed-up claims, whose
unit is a whole accuracy-vs-speed-up curve -- and each comparison is a paired test over seeds
(:mod:`passprune.stats.paired`).  Holm's correction runs over every comparison of the file that has a
p-value, because a study that checks many claims on many targets would otherwise "support" some of them
by chance.

Rules that are easy to get wrong, and why they are what they are:

* ``versus: best_baseline`` is the baseline-family method with the highest *validation* accuracy at that
  (dataset, arch, target) -- mean over seeds of ``val_top1`` (``val_top1_before_ft`` for a
  before-fine-tuning claim, when the summary has it).  Choosing it on test accuracy would pick the
  baseline that is luckiest on the very numbers being tested and bias the verdict towards
  "contradicted".  The chosen method is recorded in the ``versus`` column.
* Seeds present for only one side are dropped (and listed in ``note``): an unpaired seed carries no
  paired information.
* A claim whose ``method`` or ``versus`` has no rows at all (e.g. a control not run in this study)
  gives a single "no data" row instead of an error, so a partial study still gets a report.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .paired import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    MIN_SEEDS,
    NO_DATA,
    NOT_ENOUGH_SEEDS,
    align_by_seed,
    decide,
    holm,
    paired_compare,
    wilcoxon_min_n,
)

#: Every verdict string, in the order tables count them.
VERDICTS: tuple[str, ...] = ("supported", "contradicted", "inconclusive", NOT_ENOUGH_SEEDS, NO_DATA)
#: A speed-up comparison on measured latency whose latency noise (:func:`latency_noise`) exceeds the claimed
#: margin: not decided, whatever its interval says.  Counted as "inconclusive" (:func:`base_verdict`).
LATENCY_NOISE_VERDICT = "inconclusive: latency noise exceeds the margin"
METRICS: tuple[str, ...] = ("top1", "top1_before_ft", "speedup_at_matched_accuracy")
SPEEDUP = "speedup_at_matched_accuracy"
BEST_BASELINE = "best_baseline"
#: Where the schema lives, relative to the repository root.
SCHEMA_RELPATH = Path("workflow") / "schemas" / "claims.schema.yaml"
#: Validation column that picks ``best_baseline`` for each metric (first one present is used).
SELECTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "top1": ("val_top1",),
    "val_top1": ("val_top1",),  # design choices are judged on validation data (never test)
    "top1_before_ft": ("val_top1_before_ft", "val_top1"),
    SPEEDUP: ("val_top1",),
}
#: Columns of :func:`evaluate_claims`' result, in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "claim",
    "metric",
    "relation",
    "margin",
    "unit",
    "dataset",
    "arch",
    "target",
    "method",
    "versus",
    "versus_rule",
    "n",
    "seeds",
    "mean_diff",
    "ci_low",
    "ci_high",
    "boot_low",
    "boot_high",
    "test",
    "p",
    "p_holm",
    "holm_m",
    "verdict",
    "speedup_axis",
    "accuracy_level",
    "latency_noise",
    "note",
    "text",
)


class ClaimsError(ValueError):
    """A claims file is unreadable or invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, as data (see ``workflow/schemas/claims.schema.yaml`` for each field)."""

    id: str
    text: str
    method: str
    versus: str
    metric: str
    relation: str
    margin: float
    targets: tuple[float, ...] | None = None  # None = every target present
    dataset: tuple[str, ...] | None = None
    arch: tuple[str, ...] | None = None
    source: str | None = None
    versus_source: str | None = None
    matched_accuracy: str | float = "lowest"
    where: str = ""

    @property
    def unit(self) -> str:
        return "x" if self.metric == SPEEDUP else "points"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Claim:
        def names(v: Any) -> tuple[str, ...] | None:
            return None if v is None else ((v,) if isinstance(v, str) else tuple(v))

        targets = d.get("targets", "all")
        return cls(
            id=d["id"],
            text=d["text"],
            method=d["method"],
            versus=d["versus"],
            metric=d["metric"],
            relation=d["relation"],
            margin=float(d["margin"]),
            targets=None if targets == "all" else tuple(float(t) for t in targets),
            dataset=names(d.get("dataset")),
            arch=names(d.get("arch")),
            source=d.get("source"),
            versus_source=d.get("versus_source"),
            matched_accuracy=d.get("matched_accuracy", "lowest"),
            where=d.get("where", ""),
        )


# ----------------------------------------------------------------------------- loading and validation
def find_schema(claims_path: str | os.PathLike | None = None) -> Path:
    """The claims schema: next to the claims file's repository (its folder or a parent holding
    ``workflow/schemas``), else this source tree's repository root."""
    candidates: list[Path] = []
    if claims_path is not None:
        p = Path(claims_path).resolve()
        candidates += [parent / SCHEMA_RELPATH for parent in p.parents]
    candidates.append(Path(__file__).resolve().parents[2] / SCHEMA_RELPATH)
    for c in candidates:
        if c.is_file():
            return c
    raise ClaimsError(
        f"{claims_path}: cannot find {SCHEMA_RELPATH.as_posix()} (looked in "
        f"{', '.join(str(c.parent.parent.parent) for c in candidates)})"
    )


def _key_path(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _format_error(err: Any, data: Any) -> str:
    """``claims[3] (id 'x').versus: message`` -- the key path, the claim's id when known, and for
    oneOf/anyOf failures the most specific sub-error (jsonschema's own message there is vague)."""
    from jsonschema.exceptions import best_match

    path = list(err.absolute_path)
    where = _key_path(path)
    if len(path) >= 2 and path[0] == "claims" and isinstance(path[1], int):
        try:
            cid = data["claims"][path[1]].get("id")
        except (AttributeError, IndexError, KeyError, TypeError):
            cid = None
        if cid is not None:
            rest = _key_path(path[2:]) if len(path) > 2 else ""
            where = f"claims[{path[1]}] (id {cid!r})" + (f".{rest}" if rest else "")
    msg = err.message
    if err.context:
        sub = best_match(err.context)
        msg += f" ({sub.message})"
    return f"{where}: {msg}"


def validate_claims(data: Any, path: str | os.PathLike = "<claims>", schema: str | os.PathLike | None = None) -> None:
    """Validate parsed claims against the JSON schema, then check what a schema cannot say.

    Raises :class:`ClaimsError` listing *every* problem, each as ``<file>: <key path>: <message>``.
    """
    import jsonschema

    schema_path = Path(schema) if schema is not None else find_schema(path)
    spec = yaml.safe_load(schema_path.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(spec)
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [_format_error(e, data) for e in errors]
    if not problems:
        seen: dict[str, int] = {}
        for i, c in enumerate(data["claims"]):
            if c["id"] in seen:
                problems.append(f"claims[{i}].id: duplicate id {c['id']!r} (also claims[{seen[c['id']]}])")
            seen.setdefault(c["id"], i)
            if "matched_accuracy" in c and c["metric"] != SPEEDUP:
                problems.append(f"claims[{i}] (id {c['id']!r}).matched_accuracy: only for metric {SPEEDUP}")
    if problems:
        raise ClaimsError(f"{path}: invalid claims file:\n  " + "\n  ".join(f"{path}: {p}" for p in problems))


def load_claims(path: str | os.PathLike, schema: str | os.PathLike | None = None) -> list[Claim]:
    """Read, validate and parse a claims YAML file (errors name the file and the key)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClaimsError(f"{path}: claims file not found") from None
    except yaml.YAMLError as err:
        raise ClaimsError(f"{path}: not valid YAML ({err})") from err
    validate_claims(data, path, schema)
    return [Claim.from_dict(c) for c in data["claims"]]


# ----------------------------------------------------------------------------- speed-up at matched accuracy
def speedup_at_accuracy(speedups: Sequence[float], accuracies: Sequence[float], level: float) -> float:
    """The largest speed-up at which a method's accuracy-vs-speed-up curve still reaches ``level``.

    The curve is the piecewise-linear interpolation of the points sorted by speed-up (one point per MACs
    target, plus the dense model at 1x).  The result is the largest speed-up whose interpolated top-1 is
    >= ``level``: a crossing inside a segment, or a point.  For a non-monotone curve this is the *last*
    time it is at or above the level -- the most one can speed up while keeping that accuracy.  No
    extrapolation: a curve still above the level at its last point gives that point's speed-up (a lower
    bound); NaN when no point reaches the level.
    """
    s = np.asarray(speedups, float)
    a = np.asarray(accuracies, float)
    ok = ~(np.isnan(s) | np.isnan(a))
    s, a = s[ok], a[ok]
    if s.size == 0 or math.isnan(level) or a.max() < level:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    s, a = s[order], a[order]
    hits = list(s[a >= level])
    for i in range(s.size - 1):
        a0, a1 = a[i], a[i + 1]
        if (a0 >= level) != (a1 >= level):  # the segment crosses the level
            hits.append(s[i] + (level - a0) * (s[i + 1] - s[i]) / (a1 - a0))
    return float(max(hits))


def matched_level(acc_a: Sequence[float], acc_b: Sequence[float], rule: str | float = "lowest") -> float:
    """The common accuracy level at which two curves' speed-ups are compared.

    ``"lowest"``: the lowest top-1 *both* curves reach, max(min a, min b) -- the most aggressive operating
    point they share, where pruning methods differ most (the paper compares at ~80%, low on its curves);
    the curve whose minimum it is reaches it exactly, the other crosses it, so neither is extrapolated.
    NaN when the accuracy ranges do not overlap.  A number is used as is (e.g. 80 for the paper's level).

    Why not the *highest* common accuracy: both curves start at the dense model (see
    :func:`_speedup_comparisons`), so the highest level both reach is the dense accuracy, where both
    speed-ups are 1x and the comparison is empty.
    """
    if not isinstance(rule, str):
        return float(rule)
    a, b = np.asarray(acc_a, float), np.asarray(acc_b, float)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return math.nan
    level = max(a.min(), b.min())
    return float(level) if level <= min(a.max(), b.max()) else math.nan


# ----------------------------------------------------------------------------- selecting rows
def _is(col: pd.Series, values: Sequence[str] | str | None) -> pd.Series:
    if values is None:
        return pd.Series(True, index=col.index)
    values = (values,) if isinstance(values, str) else tuple(values)
    return col.astype("object").isin(values)


def _tkey(t: float) -> float:
    return round(float(t), 6)


def _scope(df: pd.DataFrame, claim: Claim) -> pd.DataFrame:
    """Rows inside the claim's dataset/arch/target filters (dense reference rows never compared)."""
    d = df[(df["family"].astype("object") != "dense") & _is(df["dataset"], claim.dataset) & _is(df["arch"], claim.arch)]
    d = d.assign(_t=d["target"].map(_tkey))
    if claim.targets is not None:
        d = d[d["_t"].isin({_tkey(t) for t in claim.targets})]
    return d


def _side(scope: pd.DataFrame, method: str, source: str | None) -> pd.DataFrame:
    rows = scope[scope["method"].astype("object") == method]
    if source is not None:
        rows = rows[rows["source"].astype("object") == source]
    return rows


def _per_seed(rows: pd.DataFrame, column: str, claim: Claim, who: str) -> pd.Series:
    dup = rows["seed"].duplicated(keep=False)
    if dup.any():
        srcs = sorted({str(s) for s in rows.loc[dup, "source"]})
        raise ValueError(
            f"claim {claim.id!r}: {who} has several runs for seed(s) "
            f"{sorted(set(rows.loc[dup, 'seed']))} (sources {srcs}); add a `source:`/`versus_source:` "
            "filter to the claim"
        )
    return pd.Series(pd.to_numeric(rows[column], errors="coerce").to_numpy(), index=rows["seed"].astype(int))


def best_baseline(rows: pd.DataFrame, metric: str) -> tuple[str | None, str]:
    """The baseline-family method with the highest mean validation accuracy in ``rows`` (one
    (dataset, arch, target) block, or a whole curve), ties broken by name; and a note saying so."""
    base = rows[rows["family"].astype("object") == "baseline"]
    if base.empty:
        return None, "no baseline-family runs"
    col = next((c for c in SELECTION_COLUMNS[metric] if c in base.columns and base[c].notna().any()), None)
    if col is None:
        return None, f"no validation accuracy ({'/'.join(SELECTION_COLUMNS[metric])}) for the baselines"
    means = base.groupby(base["method"].astype("object"))[col].mean().dropna()
    if means.empty:
        return None, f"no {col} for the baselines"
    means = means.sort_index(kind="mergesort")
    name = str(means.idxmax())
    return name, f"best_baseline = {name} (highest mean {col} of {len(means)} baselines: {means.max():.2f})"


# ----------------------------------------------------------------------------- comparisons
@dataclass
class _Pending:
    """One comparison before testing: per-seed values of both sides and descriptive fields."""

    claim: Claim
    dataset: Any
    arch: Any
    target: float
    versus: str
    a: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    b: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    notes: list[str] = field(default_factory=list)
    verdict: str | None = None  # set for "no data"
    speedup_axis: str = ""
    accuracy_level: float = math.nan
    latency_noise: float = math.nan


def _no_data(
    claim: Claim, why: str, dataset: Any = None, arch: Any = None, target: float = math.nan, versus: str | None = None
) -> _Pending:
    return _Pending(claim, dataset, arch, target, versus or claim.versus, notes=[why], verdict=NO_DATA)


def _top1_comparisons(scope: pd.DataFrame, claim: Claim) -> list[_Pending]:
    mine = _side(scope, claim.method, claim.source)
    out = []
    for (ds, arch, t), rows_a in mine.groupby(["dataset", "arch", "_t"], sort=False):
        block = scope[(scope["dataset"] == ds) & (scope["arch"] == arch) & (scope["_t"] == t)]
        notes = []
        versus = claim.versus
        if versus == BEST_BASELINE:  # never the claimed method itself (a baseline vs the other baselines)
            name, why = best_baseline(block[block["method"] != claim.method], claim.metric)
            if name is None:
                out.append(_no_data(claim, why, ds, arch, t))
                continue
            versus, notes = name, [why]
        rows_b = _side(block, versus, claim.versus_source)
        if rows_b.empty:
            out.append(_no_data(claim, f"no {versus} runs at {ds}/{arch}, target {t:g}", ds, arch, t, versus))
            continue
        out.append(
            _Pending(
                claim,
                ds,
                arch,
                t,
                versus,
                _per_seed(rows_a, claim.metric, claim, claim.method),
                _per_seed(rows_b, claim.metric, claim, versus),
                notes,
            )
        )
    return out


def _curves(rows: pd.DataFrame, axis: str, dense: dict[int, float]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per seed: (speed-ups, top-1s) of the pruned runs, plus the seed's dense model at (1x, its top-1)."""
    out = {}
    for seed, g in rows.groupby("seed"):
        s = pd.to_numeric(g[axis], errors="coerce").to_numpy(float)
        a = pd.to_numeric(g["top1"], errors="coerce").to_numpy(float)
        if int(seed) in dense:
            s, a = np.append(s, 1.0), np.append(a, dense[int(seed)])
        out[int(seed)] = (s, a)
    return out


def _dense_top1(df: pd.DataFrame, ds: Any, arch: Any) -> dict[int, float]:
    d = df[
        ((df["family"].astype("object") == "dense") | (df["method"].astype("object") == "dense"))
        & (df["dataset"] == ds)
        & (df["arch"] == arch)
    ]
    top1 = pd.to_numeric(d["top1"], errors="coerce")
    return {int(s): float(v) for s, v in zip(d["seed"], top1) if not math.isnan(v)}


def _speedup_comparisons(df: pd.DataFrame, scope: pd.DataFrame, claim: Claim) -> list[_Pending]:
    """Per (dataset, arch): per seed, the speed-up each method reaches at a common top-1 level (see
    :func:`matched_level`, :func:`speedup_at_accuracy`), compared paired by seed.

    Each seed's curve is its pruned runs (one per MACs target) plus that seed's dense model at 1x: every
    method starts from it (it is the "keep 100% of the MACs" point), and with two or three targets a
    method that is better everywhere would otherwise share no accuracy range with a worse one.  The
    speed-up axis is measured latency (``speedup_latency``) when every pruned run of both curves has it,
    else ``speedup_macs`` for both (never a mix); the row says which.
    """
    mine = _side(scope, claim.method, claim.source)
    out = []
    for (ds, arch), rows_a in mine.groupby(["dataset", "arch"], sort=False):
        block = scope[(scope["dataset"] == ds) & (scope["arch"] == arch)]
        notes: list[str] = []
        versus = claim.versus
        if versus == BEST_BASELINE:
            name, why = best_baseline(block[block["method"] != claim.method], claim.metric)
            if name is None:
                out.append(_no_data(claim, why, ds, arch))
                continue
            versus, notes = name, [why + " over the curve's targets"]
        rows_b = _side(block, versus, claim.versus_source)
        if rows_b.empty:
            out.append(_no_data(claim, f"no {versus} runs at {ds}/{arch}", ds, arch, versus=versus))
            continue
        out.append(_speedup_pending(df, claim, (ds, arch), versus, rows_a, rows_b, notes))
    return out


def _speedup_pending(
    df: pd.DataFrame,
    claim: Claim,
    block: tuple[Any, Any],
    versus: str,
    rows_a: pd.DataFrame,
    rows_b: pd.DataFrame,
    notes: list[str],
) -> _Pending:
    """One (dataset, arch)'s speed-up comparison: both sides' per-seed curves on one speed-up axis, read at each
    seed's matched top-1 level. A side with several runs per seed and target has no single curve, so it is an
    error that names the filter to add rather than a silent pick."""
    ds, arch = block
    for rows, who in ((rows_a, claim.method), (rows_b, versus)):
        if rows.duplicated(["seed", "_t"]).any():
            raise ValueError(
                f"claim {claim.id!r}: {who} has several runs per seed and target at {ds}/{arch}; "
                "add a `source:`/`versus_source:` filter to the claim"
            )
    both = pd.concat([rows_a, rows_b])
    lat = pd.to_numeric(both["speedup_latency"], errors="coerce")
    axis = "speedup_latency" if lat.notna().all() else "speedup_macs"
    if axis == "speedup_macs":
        notes.append(f"speed-up from MACs: {int(lat.isna().sum())} of {len(both)} runs lack speedup_latency")
    dense = _dense_top1(df, ds, arch)
    va, vb, levels = _matched_speedups(
        claim, versus, _curves(rows_a, axis, dense), _curves(rows_b, axis, dense), dense, notes
    )
    noise = math.nan
    if axis == "speedup_latency":
        noise, why = latency_noise(dense_latency_spread(df, ds, arch), va, vb)
        notes.append(why + (f"; exceeds the margin {claim.margin:.2f}x: not decided" if noise > claim.margin else ""))
    return _Pending(
        claim,
        ds,
        arch,
        math.nan,
        versus,
        pd.Series(va, dtype=float),
        pd.Series(vb, dtype=float),
        notes,
        speedup_axis=axis.removeprefix("speedup_"),
        accuracy_level=float(np.mean(levels)) if levels else math.nan,
        latency_noise=noise,
    )


# ----------------------------------------------------------------------------- latency noise
def latency_batch(df: pd.DataFrame) -> int | None:
    """The largest batch size whose dense latency the summary records (``latency_ms_dense_bs<N>``): the one
    ``speedup_latency`` is measured at."""
    sizes = [
        int(c.removeprefix("latency_ms_dense_bs")) for c in df.columns if re.fullmatch(r"latency_ms_dense_bs\d+", c)
    ]
    return max(sizes) if sizes else None


@dataclass(frozen=True)
class LatencySpread:
    """How much one seed's dense model's measured latency varied: every fine-tuning job measures it again (the
    same bit-identical model), so its spread across the jobs is the measurement noise, on a relative scale."""

    cv: float  # sample std / mean of the dense latency over the seed's runs
    runs: int
    batch: int


def dense_latency_spread(df: pd.DataFrame, ds: Any, arch: Any) -> dict[int, LatencySpread]:
    """Per seed of (dataset, arch): the coefficient of variation of the dense model's latency at
    :func:`latency_batch` across that seed's runs (seeds with fewer than two measurements are left out)."""
    batch = latency_batch(df)
    if batch is None:
        return {}
    rows = df[(df["dataset"] == ds) & (df["arch"] == arch)]
    lat = pd.to_numeric(rows[f"latency_ms_dense_bs{batch}"], errors="coerce")
    out = {}
    for seed, v in lat.groupby(rows["seed"].astype(int)):
        v = v.dropna()
        if len(v) >= 2 and v.mean() > 0:
            out[int(seed)] = LatencySpread(float(v.std() / v.mean()), len(v), batch)
    return out


def latency_noise(spread: dict[int, LatencySpread], va: dict[int, float], vb: dict[int, float]) -> tuple[float, str]:
    """The measurement noise of a per-seed speed-up difference, in x, and a note that says how it was measured.

    Each speed-up comes from its own job, whose latencies carry the relative noise the dense model shows across
    the seed's jobs (``cv``); a difference of two speed-ups S_a, S_b then has a standard deviation of about
    cv * sqrt(S_a^2 + S_b^2), even between two identical models.  The comparison's noise is the median of that
    over its paired seeds.  NaN (and a note saying so) when no seed has two dense measurements.
    """
    per_seed = {s: spread[s].cv * math.hypot(va[s], vb[s]) for s in va if s in vb and s in spread}
    if not per_seed:
        return math.nan, "latency noise not measurable (no seed has two measurements of its dense model)"
    used = [spread[s] for s in per_seed]
    noise = float(np.median(list(per_seed.values())))
    cv = float(np.median([u.cv for u in used]))
    runs = int(np.median([u.runs for u in used]))
    return noise, (
        f"latency noise {noise:.3f}x (1 sd of a seed's speed-up difference: the dense model's latency at batch "
        f"{used[0].batch} varied by {cv:.1%} (CV, median over seeds) across its ~{runs} runs per seed)"
    )


def _matched_speedups(
    claim: Claim,
    versus: str,
    ca: dict[int, tuple[np.ndarray, np.ndarray]],
    cb: dict[int, tuple[np.ndarray, np.ndarray]],
    dense: dict[int, float],
    notes: list[str],
) -> tuple[dict[int, float], dict[int, float], list[float]]:
    """Per seed with both curves: each side's speed-up at the seed's matched top-1 level, and the levels. A seed
    missing a side, or whose curves share no level, is left out with a note, since it carries no paired value."""
    va, vb, levels = {}, {}, []
    for seed in sorted(set(ca) | set(cb)):
        if seed not in ca or seed not in cb:
            notes.append(f"seed {seed}: no {claim.method if seed not in ca else versus} runs")
            continue
        if seed not in dense:
            notes.append(f"seed {seed}: no dense run, curves without the 1x point")
        (sa, aa), (sb, ab) = ca[seed], cb[seed]
        level = matched_level(aa, ab, claim.matched_accuracy)
        xa, xb = speedup_at_accuracy(sa, aa, level), speedup_at_accuracy(sb, ab, level)
        if math.isnan(xa) or math.isnan(xb):
            what = (
                "top-1 curves do not overlap"
                if isinstance(claim.matched_accuracy, str)
                else f"not both curves reach {level:g}% top-1"
            )
            notes.append(
                f"seed {seed}: {what} ({claim.method} "
                f"{np.nanmin(aa):.2f}-{np.nanmax(aa):.2f}, "
                f"{versus} {np.nanmin(ab):.2f}-{np.nanmax(ab):.2f})"
            )
            continue
        va[seed], vb[seed] = xa, xb
        levels.append(level)
    return va, vb, levels


def _pending(df: pd.DataFrame, claim: Claim) -> list[_Pending]:
    scope = _scope(df, claim)
    if _side(scope, claim.method, claim.source).empty:
        return [_no_data(claim, f"no {claim.method} runs" + (f" from {claim.source}" if claim.source else ""))]
    if claim.versus != BEST_BASELINE and _side(scope, claim.versus, claim.versus_source).empty:
        return [
            _no_data(claim, f"no {claim.versus} runs" + (f" from {claim.versus_source}" if claim.versus_source else ""))
        ]
    if claim.metric == SPEEDUP:
        return _speedup_comparisons(df, scope, claim)
    return _top1_comparisons(scope, claim)


# ----------------------------------------------------------------------------- evaluation
def evaluate_claims(
    summary: pd.DataFrame,
    claims: Sequence[Claim] | str | os.PathLike,
    *,
    alpha: float = ALPHA,
    min_seeds: int = MIN_SEEDS,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """Every claim against the summary: one row per comparison (columns :data:`RESULT_COLUMNS`).

    ``claims`` is a list of :class:`Claim` or the path of a claims YAML file.  ``mean_diff`` and the
    intervals are of ``method - versus``; ``ci_low``/``ci_high`` (t-interval) decide the verdict,
    ``boot_low``/``boot_high`` (paired percentile bootstrap) are reported alongside.  ``p`` is the
    claim's one-sided (or TOST) p-value, ``p_holm`` its Holm-adjusted value over the ``holm_m``
    comparisons with at least ``min_seeds`` paired seeds.
    """
    if not isinstance(claims, (list, tuple)):
        claims = load_claims(claims)
    pending = [p for c in claims for p in _pending(summary, c)]
    pairs = [align_by_seed(p.a, p.b) if p.verdict is None else None for p in pending]
    m = sum(1 for al in pairs if al is not None and al.n >= min_seeds)
    rows = []
    for p, al in zip(pending, pairs):
        row = _result_row(p, m)
        notes = list(p.notes)
        if al is not None:
            notes += _test_pair(row, p, m, alpha=alpha, min_seeds=min_seeds, n_resamples=n_resamples, seed=seed)
        row["note"] = "; ".join(n for n in notes if n)
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    out["p_holm"] = holm(out["p"].to_numpy(float), alpha)
    out["verdict"] = [
        v if isinstance(v, str) else decide(rel, mg, (lo, hi), ph, n, alpha, min_seeds)
        for v, rel, mg, lo, hi, ph, n in zip(
            out["verdict"], out["relation"], out["margin"], out["ci_low"], out["ci_high"], out["p_holm"], out["n"]
        )
    ]
    noisy = (pd.to_numeric(out["latency_noise"]) > out["margin"]) & out["verdict"].isin(VERDICTS[:3])
    out.loc[noisy, "verdict"] = LATENCY_NOISE_VERDICT  # never decided on a latency the machine cannot resolve
    return out


def base_verdict(verdict: str) -> str:
    """The verdict a count or a colour goes by: ``"inconclusive: latency noise ..."`` is an inconclusive."""
    return str(verdict).split(":", 1)[0]


def _result_row(p: _Pending, m: int) -> dict[str, Any]:
    """A comparison's row before testing: what was compared, with empty statistics, so a "no data" row has the
    same columns as a tested one."""
    c = p.claim
    return {
        "claim": c.id,
        "metric": c.metric,
        "relation": c.relation,
        "margin": c.margin,
        "unit": c.unit,
        "dataset": p.dataset,
        "arch": p.arch,
        "target": p.target,
        "method": c.method,
        "versus": p.versus,
        "versus_rule": c.versus,
        "n": 0,
        "seeds": "",
        "mean_diff": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "boot_low": math.nan,
        "boot_high": math.nan,
        "test": "",
        "p": math.nan,
        "p_holm": math.nan,
        "holm_m": m,
        "verdict": p.verdict,
        "speedup_axis": p.speedup_axis,
        "accuracy_level": p.accuracy_level,
        "latency_noise": p.latency_noise,
        "note": "",
        "text": c.text,
    }


def _test_pair(
    row: dict[str, Any], p: _Pending, m: int, *, alpha: float, min_seeds: int, n_resamples: int, seed: int
) -> list[str]:
    """Fill ``row``'s statistics from the paired test of ``p``; returns the notes to add. The p-value enters
    Holm's correction only with at least ``min_seeds`` paired seeds (fewer cannot reach significance honestly)."""
    c = p.claim
    notes = []
    r = paired_compare(
        p.a,
        p.b,
        c.relation,
        c.margin,
        m_tests=max(m, 1),
        alpha=alpha,
        n_resamples=n_resamples,
        seed=seed,
        names=(c.method, p.versus),
    )
    row.update(
        n=r.n,
        seeds=",".join(map(str, r.seeds)),
        mean_diff=r.mean_diff,
        ci_low=r.t_ci[0],
        ci_high=r.t_ci[1],
        boot_low=r.boot_ci[0],
        boot_high=r.boot_ci[1],
    )
    if r.n >= min_seeds:
        row.update(test=r.test, p=r.p_value)
    else:
        notes.append(f"{r.n} paired seed(s); at least {min_seeds} needed")
    if r.note:
        notes.append(r.note)
    return notes


def verdict_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Per claim (file order): its text, the number of comparisons and how many got each verdict."""
    recs = []
    for cid, g in results.groupby("claim", sort=False):
        counts = g["verdict"].map(base_verdict).value_counts()
        recs.append(
            {
                "claim": cid,
                "text": g["text"].iloc[0],
                "comparisons": len(g),
                **{v: int(counts.get(v, 0)) for v in VERDICTS},
            }
        )
    return pd.DataFrame(recs, columns=["claim", "text", "comparisons", *VERDICTS])


def decision_rule_text(results: pd.DataFrame, alpha: float = ALPHA) -> str:
    """How the verdicts were made, in words (for the report and the CLI)."""
    m = int(results["holm_m"].iloc[0]) if len(results) else 0
    tests = sorted(set(results["test"]) - {""})
    test_txt = {
        "t": "the paired t-test (`scipy.stats.ttest_rel`)",
        "wilcoxon": "the Wilcoxon signed-rank test (`scipy.stats.wilcoxon`)",
    }
    used = " and ".join(test_txt[t] for t in tests) if tests else "no test (no comparison had enough seeds)"
    return (
        "Every comparison is paired by seed (each seed's methods prune the same dense model): the unit is the "
        "per-seed difference `method − versus`, and seeds present on one side only are dropped (see notes). "
        f"The verdict uses the {100 * (1 - alpha):.0f}% t-interval of the mean difference "
        "(`scipy.stats.t.interval`, df = n − 1); the paired percentile bootstrap interval "
        "(`scipy.stats.bootstrap`, fixed seed) is shown next to it but does not decide. "
        f"Tests: {used}; the signed-rank test is used when n ≥ {wilcoxon_min_n(max(m, 1), alpha)} seeds "
        "(below that its smallest attainable one-sided p-value, 2^-n, cannot pass Holm's strictest level), "
        "otherwise the paired t-test. "
        "`greater` claims test H0: diff ≤ margin, `less` claims H0: diff ≥ −margin, `equivalent` claims use two "
        "one-sided tests (TOST) at ±margin. "
        f"P-values are Holm-adjusted over all {m} comparison(s) with at least {MIN_SEEDS} paired seeds "
        "(`statsmodels` `multipletests`, method holm). "
        f"**supported**: the interval clears the margin and the adjusted p < {alpha:g}; **contradicted**: the "
        "interval excludes the claimed effect; **inconclusive**: neither; **not enough seeds**: fewer than "
        f"{MIN_SEEDS} paired seeds; **no data**: a method has no runs. `best_baseline` is the baseline with the "
        "highest mean *validation* top-1 at that target (before fine-tuning for before-fine-tuning claims), "
        "never chosen on test. Speed-up at matched accuracy: per seed, each method's top-1-vs-speed-up curve "
        "(its MACs targets plus the seed's dense model at 1x), the lowest top-1 both curves reach (unless the "
        "claim fixes a level), and the speed-up each curve reaches there by linear interpolation (measured "
        "latency speed-up when every run has it, MACs speed-up otherwise). On measured latency the row states the "
        "latency noise: every fine-tuning job measures the seed's dense model again, and the spread of those "
        "measurements (coefficient of variation, at the speed-up's batch size) times sqrt(S_a² + S_b²) is the "
        "standard deviation a seed's speed-up difference has from measurement alone (median over seeds); when it "
        f"exceeds the claimed margin the comparison is not decided (**{LATENCY_NOISE_VERDICT}**)."
    )


# ----------------------------------------------------------------------------- fine-tuning budgets
def evaluate_claims_by_budget(
    summary: pd.DataFrame, claims: Sequence[Claim] | str | os.PathLike, **options: Any
) -> pd.DataFrame:
    """:func:`evaluate_claims` at each fine-tuning budget of the summary (``budget`` column), fewest steps first:
    every comparison gets its paired difference, intervals, Holm-adjusted test and verdict per budget, with the
    columns ``budget`` and ``budget_steps`` after ``target``. The dense rows belong to every budget.

    Holm's family is one budget's comparisons: each budget answers the claims file once, as a study run at that
    budget alone would, and a reader compares the verdicts across budgets rather than pooling them; pooling would
    make a claim's verdict at 100 steps depend on how many other budgets the study happened to run. A summary
    without budgets gives exactly :func:`evaluate_claims`' table (no budget columns)."""
    from ..report.aggregate import budget_names, budget_rows

    names = budget_names(summary)
    if not names:
        return evaluate_claims(summary, claims, **options)
    if not isinstance(claims, (list, tuple)):
        claims = load_claims(claims)
    parts = []
    for b in names:
        rows = budget_rows(summary, b)
        out = evaluate_claims(rows, claims, **options)
        at = out.columns.get_loc("target") + 1
        out.insert(at, "budget", b)
        steps = pd.to_numeric(rows.loc[rows["budget"].notna(), "budget_steps"], errors="coerce").median()
        out.insert(at + 1, "budget_steps", steps)
        parts.append(out)
    return pd.concat(parts, ignore_index=True)
