"""Tests for passprune.stats: paired statistics against scipy/statsmodels' own values, and the verdicts
of claims on synthetic summaries whose truth is known by construction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml
from statsmodels.stats.multitest import multipletests

from passprune.stats import claims as C
from passprune.stats import paired as P

REPO = Path(__file__).resolve().parent.parent
CLAIMS_YAML = REPO / "config" / "claims.yaml"

A = np.array([71.2, 70.4, 72.9, 69.8, 71.5, 70.9, 72.2])
B = np.array([70.1, 70.0, 71.2, 69.9, 70.2, 70.3, 71.0])


# ----------------------------------------------------------------------------- statistics vs scipy
def test_t_interval_is_scipys_on_the_differences():
    d = A - B
    expect = scipy.stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=scipy.stats.sem(d))
    assert P.t_interval(d) == pytest.approx(expect, rel=1e-12)
    assert P.t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)  # zero spread: a point, not NaN
    assert all(math.isnan(x) for x in P.t_interval([1.0]))


@pytest.mark.parametrize("alternative", ["greater", "less"])
@pytest.mark.parametrize("margin", [0.0, 0.4, -0.3])
def test_pvalues_are_scipys(alternative, margin):
    t = scipy.stats.ttest_rel(A - margin, B, alternative=alternative).pvalue
    w = scipy.stats.wilcoxon(A - margin, B, alternative=alternative).pvalue
    assert P.paired_pvalue(A, B, alternative, margin, "t") == pytest.approx(t, rel=1e-12)
    assert P.paired_pvalue(A, B, alternative, margin, "wilcoxon") == pytest.approx(w, rel=1e-12)


def test_tost_is_the_larger_one_sided_p():
    for test in ("t", "wilcoxon"):
        lo = P.paired_pvalue(A, B, "greater", -1.5, test)
        hi = P.paired_pvalue(A, B, "less", 1.5, test)
        assert P.tost_pvalue(A, B, 1.5, test) == max(lo, hi)
    with pytest.raises(ValueError, match="margin"):
        P.tost_pvalue(A, B, 0.0)


def test_holm_is_statsmodels_and_skips_nan():
    p = np.array([0.01, 0.04, math.nan, 0.03, 0.2])
    adj = P.holm(p)
    ref = multipletests(p[~np.isnan(p)], alpha=0.05, method="holm")[1]
    assert np.isnan(adj[2])
    np.testing.assert_allclose(adj[~np.isnan(p)], ref, rtol=1e-12)
    assert np.isnan(P.holm([math.nan])).all()


def test_bootstrap_is_scipys_paired_percentile_and_reproducible():
    got = P.bootstrap_interval(A, B, n_resamples=2000, seed=3)
    ref = scipy.stats.bootstrap(
        (A, B),
        lambda x, y, axis=-1: np.mean(x - y, axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(3),
    ).confidence_interval
    assert got == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert P.bootstrap_interval(A, B, n_resamples=2000, seed=3) == got
    assert P.bootstrap_interval([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == (1.0, 1.0)


def test_test_choice_depends_on_seeds_and_family_size():
    assert P.wilcoxon_min_n(1) == 6  # two-sided minimum p at n = 5 is 0.0625
    assert P.wilcoxon_min_n(30) == 10  # 2**-10 < 0.05 / 30 < 2**-9
    assert 2.0 ** -P.wilcoxon_min_n(30) < 0.05 / 30 <= 2.0 ** -(P.wilcoxon_min_n(30) - 1)
    assert P.choose_test(5) == "t" and P.choose_test(6) == "wilcoxon" and P.choose_test(8, m_tests=30) == "t"
    r = P.paired_compare(dict(enumerate(A)), dict(enumerate(B)), "greater", 0.2)
    assert r.test == "wilcoxon" and r.n == 7
    assert r.p_value == pytest.approx(scipy.stats.wilcoxon(A - 0.2, B, alternative="greater").pvalue)
    r = P.paired_compare(dict(enumerate(A[:5])), dict(enumerate(B[:5])), "less", 0.2)
    assert r.test == "t"
    assert r.p_value == pytest.approx(scipy.stats.ttest_rel(A[:5] + 0.2, B[:5], alternative="less").pvalue)


def test_alignment_drops_unpaired_seeds_and_says_so():
    al = P.align_by_seed({0: 1.0, 1: 2.0, 2: 3.0, 5: math.nan}, {1: 1.5, 2: 2.0, 3: 9.0, 5: 1.0})
    assert al.seeds == (1, 2) and list(al.diffs) == [0.5, 1.0]
    assert al.only_a == (0,) and al.only_b == (3, 5)
    assert al.note("pass", "l1") == "dropped seed(s) 0 only in pass; seed(s) 3, 5 only in l1"


@pytest.mark.parametrize(
    "relation,margin,ci,p,verdict",
    [
        ("greater", 1.0, (1.2, 3.0), 0.01, "supported"),
        ("greater", 1.0, (1.2, 3.0), 0.2, "inconclusive"),  # Holm-adjusted p too large
        ("greater", 1.0, (0.5, 3.0), 0.01, "inconclusive"),
        ("greater", 1.0, (-2.0, 0.9), 0.9, "contradicted"),
        ("less", 0.5, (-3.0, -0.6), 0.01, "supported"),
        ("less", 0.5, (-0.4, 1.0), 0.9, "contradicted"),
        ("equivalent", 1.0, (-0.5, 0.7), 0.01, "supported"),
        ("equivalent", 1.0, (-0.5, 1.2), 0.01, "inconclusive"),
        ("equivalent", 1.0, (1.1, 2.0), 0.9, "contradicted"),
        ("equivalent", 1.0, (-3.0, -1.0), 0.9, "contradicted"),
    ],
)
def test_decision_rule(relation, margin, ci, p, verdict):
    assert P.decide(relation, margin, ci, p, n=5) == verdict
    assert P.decide(relation, margin, ci, p, n=2) == "not enough seeds"


# ----------------------------------------------------------------------------- synthetic summaries
BASELINES = ("l1", "fpgm", "depgraph")
FAMILIES = {
    "pass": "pass",
    "pass_noprompt": "pass-ablation",
    "pass_uniform": "pass-ablation",
    "pass_structure_transfer": "pass-transfer",
    **{b: "baseline" for b in BASELINES},
}


def make_summary(
    effects: dict[str, float],
    seeds=range(6),
    targets=(0.5, 0.3),
    noise: float = 0.3,
    val_shift: dict[str, float] | None = None,
    rng_seed: int = 0,
    **extra_rows,
) -> pd.DataFrame:
    """One dense run per seed and every method at every target; top-1 = seed's dense level + the
    method's effect at that target (``effects[m]``, points, scaled by (1 - target) for the curve)
    + noise.  ``val_shift`` moves validation accuracy without moving test accuracy."""
    rng = np.random.default_rng(rng_seed)
    val_shift = val_shift or {}
    rows = []
    for s in seeds:
        base = 90.0 + rng.normal(0, 1.0)  # seed-level variation, shared by every method of the seed
        rows.append(
            dict(
                dataset="ds",
                arch="net",
                method="dense",
                family="dense",
                target=1.0,
                seed=s,
                source=None,
                top1=base,
                top1_before_ft=base,
                val_top1=base,
                speedup_macs=1.0,
                speedup_latency=1.0,
            )
        )
        for m, eff in effects.items():
            for t in targets:
                top1 = base - 20 * (1 - t) + eff + rng.normal(0, noise)
                rows.append(
                    dict(
                        dataset="ds",
                        arch="net",
                        method=m,
                        family=FAMILIES.get(m, "control"),
                        target=t,
                        seed=s,
                        source="src" if m.endswith("transfer") else None,
                        top1=top1,
                        top1_before_ft=top1 - 30,
                        val_top1=top1 + val_shift.get(m, 0.0),
                        speedup_macs=1 / t,
                        speedup_latency=0.8 / t,
                    )
                )
    return pd.DataFrame(rows)


def claim(**kw) -> C.Claim:
    d = dict(id="c", text="t", method="pass", versus="l1", metric="top1", relation="greater", margin=0.0)
    d.update(kw)
    return C.Claim.from_dict(d)


def verdicts(df: pd.DataFrame, *claims: C.Claim) -> list[str]:
    return list(C.evaluate_claims(df, list(claims), n_resamples=999)["verdict"])


def test_clear_effect_reverse_effect_and_noise():
    df = make_summary({"pass": 3.0, "l1": 0.0, "fpgm": 6.0, "depgraph": 0.0})
    assert verdicts(df, claim(versus="l1", margin=1.0)) == ["supported", "supported"]
    assert verdicts(df, claim(versus="fpgm", margin=0.0)) == ["contradicted", "contradicted"]
    noise = make_summary({"pass": 0.0, "l1": 0.0}, noise=1.0, rng_seed=4)
    assert verdicts(noise, claim(versus="l1", margin=0.0)) == ["inconclusive", "inconclusive"]
    # the mirror: l1 is less than pass by more than 1 point
    assert verdicts(df, claim(method="l1", versus="pass", relation="less", margin=1.0)) == ["supported"] * 2


def test_equivalence_claims():
    df = make_summary({"pass": 0.0, "pass_structure_transfer": 0.1, "pass_uniform": 4.0}, noise=0.2)
    res = C.evaluate_claims(
        df,
        [
            claim(method="pass_structure_transfer", versus="pass", relation="equivalent", margin=1.0, source="src"),
            claim(id="d", method="pass_uniform", versus="pass", relation="equivalent", margin=1.0),
        ],
        n_resamples=999,
    )
    assert list(res["verdict"]) == ["supported"] * 2 + ["contradicted"] * 2
    assert (res["p"] < 0.05).head(2).all()


def test_not_enough_seeds_and_no_data():
    df = make_summary({"pass": 3.0, "l1": 0.0}, seeds=(0, 1))
    res = C.evaluate_claims(
        df, [claim(), claim(id="ctl", versus="scratch"), claim(id="x", method="ghost")], n_resamples=999
    )
    assert list(res["verdict"]) == ["not enough seeds", "not enough seeds", "no data", "no data"]
    assert res["p"].isna().all() and (res["holm_m"] == 0).all()
    assert "no scratch runs" in res["note"].iloc[2] and "no ghost runs" in res["note"].iloc[3]
    assert res["n"].iloc[0] == 2 and not math.isnan(res["mean_diff"].iloc[0])


def test_dropped_seeds_are_reported():
    df = make_summary({"pass": 3.0, "l1": 0.0})
    df = df[~((df["method"] == "l1") & (df["seed"] == 5))]
    res = C.evaluate_claims(df, [claim(targets=[0.5])], n_resamples=999)
    assert res["n"].item() == 5 and res["seeds"].item() == "0,1,2,3,4"
    assert "seed(s) 5 only in pass" in res["note"].item()


def test_holm_runs_over_every_comparison_of_the_file():
    df = make_summary({"pass": 3.0, "l1": 0.0, "fpgm": 1.0, "depgraph": 0.5})
    cs = [claim(id=v, versus=v) for v in BASELINES]
    res = C.evaluate_claims(df, cs, n_resamples=999)
    assert (res["holm_m"] == 6).all()
    np.testing.assert_allclose(res["p_holm"], multipletests(res["p"], method="holm")[1])


def test_best_baseline_is_chosen_on_validation_not_test():
    # fpgm is best on test (+2) but worst on validation; depgraph is best on validation
    df = make_summary({"pass": 3.0, "l1": 0.0, "fpgm": 2.0, "depgraph": 0.5}, val_shift={"fpgm": -5.0, "depgraph": 3.0})
    res = C.evaluate_claims(df, [claim(versus="best_baseline")], n_resamples=999)
    assert list(res["versus"]) == ["depgraph", "depgraph"] and (res["versus_rule"] == "best_baseline").all()
    assert "best_baseline = depgraph" in res["note"].iloc[0] and "val_top1" in res["note"].iloc[0]
    test_best = df[df["family"] == "baseline"].groupby("method")["top1"].mean().idxmax()
    assert test_best == "fpgm"  # the test-set choice would have differed
    # a baseline claimed against "the best baseline" is compared with the best of the *others*
    res = C.evaluate_claims(df, [claim(method="depgraph", versus="best_baseline")], n_resamples=99)
    assert set(res["versus"]) == {"l1"}


def test_best_baseline_before_ft_uses_validation_before_ft_when_present():
    df = make_summary({"pass": 3.0, "l1": 0.0, "fpgm": 0.0, "depgraph": 0.0})
    df["val_top1_before_ft"] = df["val_top1"] + np.where(df["method"] == "l1", 5.0, 0.0)
    df["val_top1"] = df["val_top1"] + np.where(df["method"] == "fpgm", 5.0, 0.0)
    res = C.evaluate_claims(
        df,
        [claim(versus="best_baseline", metric="top1_before_ft"), claim(id="after", versus="best_baseline")],
        n_resamples=999,
    )
    assert list(res["versus"]) == ["l1", "l1", "fpgm", "fpgm"]


# ----------------------------------------------------------------------------- speed-up at matched accuracy
def test_speedup_interpolation_by_hand():
    # points (speed-up, top-1): (2, 90), (3, 86), (4, 80): 88% is reached halfway between 2x and 3x
    assert C.speedup_at_accuracy([2, 3, 4], [90, 86, 80], 88.0) == pytest.approx(2.5)
    assert C.speedup_at_accuracy([4, 2, 3], [80, 90, 86], 83.0) == pytest.approx(3.5)  # order-free
    assert C.speedup_at_accuracy([2, 3, 4], [90, 86, 80], 86.0) == 3.0  # exactly on a point
    assert math.isnan(C.speedup_at_accuracy([2, 3, 4], [90, 86, 80], 91.0))  # never reached
    assert C.speedup_at_accuracy([2, 3, 4], [90, 86, 80], 70.0) == 4.0  # still above: the last point, no more
    # a curve above the level after its start keeps it to its last point: (1, 92) (2, 95) (3, 93) at 92 -> 3
    assert C.speedup_at_accuracy([1, 2, 3], [92, 95, 93], 92.0) == 3.0
    # a non-monotone curve reaches 85 twice: the larger speed-up counts
    assert C.speedup_at_accuracy([1, 2, 3], [84, 86, 84], 85.0) == pytest.approx(2.5)
    assert C.matched_level([90, 86, 80], [88, 84, 79]) == 80.0  # the lowest top-1 both reach
    assert math.isnan(C.matched_level([90, 89], [80, 79]))  # no overlap
    assert C.matched_level([90], [80], 85.0) == 85.0


def _curve_summary(seeds=range(4), latency=True) -> pd.DataFrame:
    """MACs speed-up / top-1: pass (2x, 90), (4x, 86); l1 (2x, 88), (4x, 80), plus a per-seed offset
    shared by both; latency speed-ups are half the MACs ones; no dense runs.  At the matched level 86
    (the lowest both reach), pass is at 4x MACs (2x latency) and l1 at 2.5x (1.25x): +1.5x MACs,
    +0.75x latency."""
    rows = []
    for s in seeds:
        for m, pts in (("pass", [(2, 90), (4, 86)]), ("l1", [(2, 88), (4, 80)])):
            for (sp, acc), t in zip(pts, (0.5, 0.25)):
                rows.append(
                    dict(
                        dataset="ds",
                        arch="net",
                        method=m,
                        family=FAMILIES[m],
                        target=t,
                        seed=s,
                        source=None,
                        top1=float(acc + s),
                        top1_before_ft=acc - 30.0 + s,
                        val_top1=float(acc + s),
                        speedup_macs=1 / t,
                        speedup_latency=sp / 2 if latency else math.nan,
                    )
                )
    return pd.DataFrame(rows)


def test_speedup_claim_paired_over_seeds():
    c = claim(metric="speedup_at_matched_accuracy", versus="best_baseline", margin=0.35)
    res = C.evaluate_claims(_curve_summary(), [c], n_resamples=999).iloc[0]
    assert res["versus"] == "l1" and res["n"] == 4 and res["speedup_axis"] == "latency"
    assert res["mean_diff"] == pytest.approx(0.75) and res["verdict"] == "supported"
    assert math.isnan(res["target"]) and res["accuracy_level"] == pytest.approx(86 + 1.5)  # mean over seeds
    assert "seed 0: no dense run" in res["note"]
    # latency missing for some runs: MACs speed-up for both curves, and the row says so
    df = _curve_summary(latency=False)
    res = C.evaluate_claims(df, [c], n_resamples=999).iloc[0]
    assert res["speedup_axis"] == "macs" and "lack speedup_latency" in res["note"]
    assert res["mean_diff"] == pytest.approx(1.5)


def test_speedup_at_a_fixed_accuracy_level():
    # at 85%: pass stays above it up to its last point (4x, a lower bound); l1 (2x, 88+s) -> (4x, 80+s)
    # crosses it at 2 + (3 + s) / 4, i.e. 2.75 .. 3.5 over seeds 0..3 (MACs axis)
    c = claim(metric="speedup_at_matched_accuracy", matched_accuracy=85.0, margin=0.0)
    res = C.evaluate_claims(_curve_summary(latency=False), [c], n_resamples=99).iloc[0]
    assert res["mean_diff"] == pytest.approx(4.0 - 3.125) and res["accuracy_level"] == 85.0
    c = claim(metric="speedup_at_matched_accuracy", matched_accuracy=95.0, margin=0.0)
    res = C.evaluate_claims(_curve_summary(latency=False), [c], n_resamples=99).iloc[0]
    assert res["n"] == 0 and "not both curves reach 95% top-1" in res["note"]


def test_speedup_curves_start_at_the_dense_model():
    # pass (2x, 90), (4x, 88) is above l1 (2x, 84), (4x, 76) everywhere: without the dense point at
    # (1x, 92) the curves share no top-1; with it, l1 reaches 88 at 1.5x and pass at 4x
    df = _curve_summary(latency=False)
    df.loc[df["method"] == "pass", "top1"] += np.tile([0.0, 2.0], 4)
    df.loc[df["method"] == "l1", "top1"] -= 4.0
    dense = pd.DataFrame(
        [
            dict(
                dataset="ds",
                arch="net",
                method="dense",
                family="dense",
                target=1.0,
                seed=s,
                source=None,
                top1=92.0 + s,
                top1_before_ft=92.0 + s,
                val_top1=92.0 + s,
                speedup_macs=1.0,
                speedup_latency=1.0,
            )
            for s in range(4)
        ]
    )
    c = claim(metric="speedup_at_matched_accuracy", margin=0.35)
    res = C.evaluate_claims(pd.concat([dense, df]), [c], n_resamples=999).iloc[0]
    assert res["n"] == 4 and res["mean_diff"] == pytest.approx(4.0 - 1.5) and "dense" not in res["note"]
    alone = C.evaluate_claims(df, [c], n_resamples=999).iloc[0]
    assert alone["n"] == 0 and "do not overlap" in alone["note"]


def test_speedup_claim_without_overlap_drops_the_seed_and_says_why():
    df = _curve_summary()
    sel = (df["method"] == "l1") & (df["seed"] == 0)
    df.loc[sel, "top1"] = [99.0, 95.0]  # l1 seed 0 is above every pass point: no common level
    res = C.evaluate_claims(df, [claim(metric="speedup_at_matched_accuracy", margin=0.0)], n_resamples=999).iloc[0]
    assert res["n"] == 3 and res["seeds"] == "1,2,3"
    assert "seed 0: top-1 curves do not overlap" in res["note"]


# ----------------------------------------------------------------------------- claims file
def test_repository_claims_file_is_valid_and_covers_the_paper():
    cs = C.load_claims(CLAIMS_YAML)
    by = {c.id: c for c in cs}
    assert by["acc_vs_best_baseline"].versus == "best_baseline" and by["acc_vs_best_baseline"].margin >= 1.0
    assert by["speedup_vs_best_baseline"].metric == "speedup_at_matched_accuracy"
    assert {c.versus for c in cs} >= {
        "pass_noprompt",
        "pass_norecur",
        "pass_uniform",
        "pass_nostats",
        "random_widths",
        "scratch",
    }
    assert {c.method for c in cs if c.relation == "equivalent"} == {"pass_structure_transfer", "pass_hypernet_transfer"}
    assert any(c.metric == "top1_before_ft" for c in cs)


def test_repository_claims_on_a_partial_study_give_no_data_not_errors():
    df = make_summary({"pass": 2.0, "l1": 0.0, "fpgm": 0.5, "depgraph": 0.0, "pass_noprompt": 1.0})
    res = C.evaluate_claims(df, CLAIMS_YAML, n_resamples=999)
    v = res.groupby("claim", sort=False)["verdict"].first()
    assert v["control_scratch"] == "no data" and v["transfer_hypernet"] == "no data"
    assert v["ablation_prompt"] in C.VERDICTS and set(res["verdict"]) <= set(C.VERDICTS)
    counts = C.verdict_counts(res)
    assert list(counts["claim"]) == [c.id for c in C.load_claims(CLAIMS_YAML)]
    assert (counts[list(C.VERDICTS)].sum(axis=1) == counts["comparisons"]).all()


def _write_claims(tmp_path: Path, data) -> Path:
    p = tmp_path / "claims.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_schema_rejects_a_misspelt_key_naming_file_and_key(tmp_path):
    data = yaml.safe_load(CLAIMS_YAML.read_text())
    data["claims"][1]["vesus"] = data["claims"][1].pop("versus")
    p = _write_claims(tmp_path, data)
    with pytest.raises(C.ClaimsError) as err:
        C.load_claims(p, schema=REPO / C.SCHEMA_RELPATH)
    msg = str(err.value)
    assert str(p) in msg and "'vesus' was unexpected" in msg and "'versus' is a required property" in msg
    assert "claims[1] (id 'speedup_vs_best_baseline')" in msg


def test_schema_rejects_bad_values_and_semantics(tmp_path):
    base = {
        "id": "a",
        "text": "t",
        "method": "pass",
        "versus": "l1",
        "metric": "top1",
        "relation": "greater",
        "margin": 0,
    }
    cases = [
        ({**base, "metric": "top5"}, "claims[0] (id 'a').metric"),
        ({**base, "relation": "equivalent", "margin": 0}, "claims[0] (id 'a').margin"),
        ({**base, "targets": "some"}, "claims[0] (id 'a').targets"),
        ({**base, "matched_accuracy": 80}, "matched_accuracy: only for metric"),
    ]
    for c, needle in cases:
        with pytest.raises(C.ClaimsError, match="claims.yaml") as err:
            C.load_claims(_write_claims(tmp_path, {"claims": [c]}), schema=REPO / C.SCHEMA_RELPATH)
        assert needle in str(err.value), str(err.value)
    with pytest.raises(C.ClaimsError, match="duplicate id 'a'"):
        C.load_claims(_write_claims(tmp_path, {"claims": [base, base]}), schema=REPO / C.SCHEMA_RELPATH)
    with pytest.raises(C.ClaimsError, match="not found"):
        C.load_claims(tmp_path / "nope.yaml")


def test_schema_is_found_from_the_claims_file_or_the_source_tree(tmp_path):
    assert C.find_schema(CLAIMS_YAML) == REPO / C.SCHEMA_RELPATH
    assert C.find_schema(tmp_path / "x.yaml") == REPO / C.SCHEMA_RELPATH  # falls back to this checkout


def test_several_sources_for_one_seed_is_an_error_naming_the_claim():
    df = make_summary({"pass": 0.0, "pass_structure_transfer": 0.0})
    extra = df[df["method"] == "pass_structure_transfer"].assign(source="other")
    df = pd.concat([df, extra])
    with pytest.raises(ValueError, match="claim 'c'.*source"):
        C.evaluate_claims(
            df,
            [claim(method="pass_structure_transfer", versus="pass", relation="equivalent", margin=1.0)],
            n_resamples=99,
        )
    res = C.evaluate_claims(
        df,
        [claim(method="pass_structure_transfer", versus="pass", relation="equivalent", margin=1.0, source="other")],
        n_resamples=99,
    )
    assert (res["n"] == 6).all()


def test_decision_rule_text_names_the_numbers():
    df = make_summary({"pass": 3.0, "l1": 0.0})
    res = C.evaluate_claims(df, [claim()], n_resamples=99)
    txt = C.decision_rule_text(res)
    assert "paired by seed" in txt and "t-interval" in txt and "Holm-adjusted over all 2 comparison(s)" in txt
    assert "Wilcoxon" in txt and "validation" in txt  # 6 seeds, 2 comparisons -> the signed-rank test


# ----------------------------------------------------------------------------- latency noise of speed-up claims
def _with_dense_latency(df: pd.DataFrame, bs64: list[float], bs1: float = 5.0) -> pd.DataFrame:
    """Every run of a seed measured the seed's dense model again: at batch 64 the values ``bs64`` (cycled over
    the seed's runs), at batch 1 always ``bs1`` (no spread: the largest batch must be the one used)."""
    df = df.copy()
    df["latency_ms_dense_bs64"] = np.resize(np.asarray(bs64, float), len(df))
    df["latency_ms_dense_bs1"] = bs1
    return df


@pytest.mark.parametrize("bs64", [[10.0, 12.0, 10.0, 12.0], [10.0, 16.0, 10.0, 16.0]])
def test_speedup_claim_states_latency_noise_and_does_not_decide_above_the_margin(bs64):
    # per seed pass reaches 2x and l1 1.25x latency speed-up (+0.75x, margin 0.35): supported without noise
    c = claim(metric="speedup_at_matched_accuracy", margin=0.35)
    quiet = C.evaluate_claims(_curve_summary(), [c], n_resamples=99).iloc[0]
    assert quiet["verdict"] == "supported" and math.isnan(quiet["latency_noise"])
    res = C.evaluate_claims(_with_dense_latency(_curve_summary(), bs64), [c], n_resamples=99).iloc[0]
    cv = np.std(bs64, ddof=1) / np.mean(bs64)
    assert res["latency_noise"] == pytest.approx(cv * math.hypot(2.0, 1.25))
    assert f"{100 * cv:.1f}% (CV" in res["note"] and "at batch 64" in res["note"]
    if res["latency_noise"] > 0.35:  # the second case: 0.63x of noise against a 0.35x margin
        assert res["verdict"] == C.LATENCY_NOISE_VERDICT and "exceeds the margin 0.35x" in res["note"]
        counts = C.verdict_counts(pd.DataFrame([res]))
        assert counts[["inconclusive", "supported"]].iloc[0].tolist() == [1, 0]
    else:  # the first: 0.25x, below the margin, so the interval decides as before
        assert res["latency_noise"] < 0.35 and res["verdict"] == "supported" and "exceeds" not in res["note"]
    assert res["mean_diff"] == quiet["mean_diff"] and res["p_holm"] == quiet["p_holm"]  # statistics unchanged
    # on the MACs axis there is no measurement noise to state
    macs = C.evaluate_claims(_with_dense_latency(_curve_summary(latency=False), bs64), [c], n_resamples=99).iloc[0]
    assert macs["speedup_axis"] == "macs" and math.isnan(macs["latency_noise"]) and macs["verdict"] == "supported"
    assert C.LATENCY_NOISE_VERDICT in C.decision_rule_text(res.to_frame().T)
