"""Tests for passprune.report: aggregation, tables, figures and the report build.

Synthetic metrics.json files (one dataset/arch, dense + two methods at two targets with two seeds, one
transfer run) stand in for real jobs, so the arithmetic can be checked against pandas directly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from passprune.files import atomic_write_text
from passprune.report.aggregate import SUMMARY_COLUMNS, aggregate, read_summary
from passprune.report.build import build_report
from passprune.report.tables import format_cell, latex_escape

DS, ARCH = "cifar10", "resnet56"
METHODS = {"pass": "pass", "pass_noprompt": "pass-ablation"}
TARGETS = (0.5, 0.3)
SEEDS = (0, 1)
DENSE_MACS, DENSE_PARAMS = 125.5e6, 855_770
GROUPS = [f"g{i}" for i in range(6)]
SIZES = {g: 16 * (1 + i // 2) for i, g in enumerate(GROUPS)}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Dense validation top-1 per epoch: seed 0 has levelled off (last 3 epochs +0.02 over the best before them),
#: seed 1 still gains 5 points in its last 3 epochs.
DENSE_CURVES = {
    0: [70.0, 80.0, 84.0, 85.0, 85.1, 85.05, 85.12, 85.0],
    1: [60.0, 66.0, 70.0, 73.0, 75.0, 77.0, 78.5, 80.0],
}


def _dense(seed: int) -> dict:
    top1 = 93.0 + 0.3 * seed
    return {
        "stage": "pretrain",
        "dataset": DS,
        "arch": ARCH,
        "seed": seed,
        "method": "dense",
        "family": "dense",
        "target": 1.0,
        "top1": top1,
        "top1_before_ft": top1,
        "val_top1": top1 + 0.1,
        "macs": DENSE_MACS,
        "macs_tp": DENSE_MACS,
        "params": DENSE_PARAMS,
        "train_seconds": 100.0 + seed,
        "wall_seconds": 120.0,
        "history": [
            {"epoch": e, "train_loss": 1.0 / e, "val_top1": v, "lr": 0.1}
            for e, v in enumerate(DENSE_CURVES[seed % 2], 1)
        ],
        "settings": {"train": {"epochs": 8}},
        "provenance": {"git_commit": "abc"},
    }


def _pruned(method: str, target: float, seed: int, source: str | None = None, family: str | None = None) -> dict:
    rng = random.Random(f"{method}{target}{seed}{source}")
    macs = DENSE_MACS * target * (0.995 + 0.004 * rng.random())
    kept = {
        g: min(SIZES[g], max(1, round(SIZES[g] * (target**0.5 + 0.1 * (i - 2.5) / 2.5)) + rng.randint(-2, 2)))
        for i, g in enumerate(GROUPS)
    }
    return {
        "stage": "finetune",
        "dataset": DS,
        "arch": ARCH,
        "seed": seed,
        "method": method,
        "family": family or METHODS[method],
        "target": target,
        "source": source,
        "top1": 90.0 + 5 * target + rng.uniform(-1, 1),
        "top1_before_ft": 30.0 + 40 * target + rng.uniform(-5, 5),
        "val_top1": 91.0,
        "val_top1_before_ft": 40.0,
        "best_epoch": 3,
        "macs": macs,
        "dense_macs": DENSE_MACS,
        "macs_ratio": macs / DENSE_MACS,
        "speedup_macs": DENSE_MACS / macs,
        "macs_tp": macs,
        "params": int(DENSE_PARAMS * target),
        "dense_params": DENSE_PARAMS,
        "speedup_latency": None if seed == 1 else 1.0 / target * 0.8,
        "latency_ms_bs1": 2.0,
        "latency_ms_bs64": 10.0,
        "latency_ms_dense_bs1": 3.0,
        "latency_ms_dense_bs64": 20.0,
        "speedup_latency_bs1": 1.5,
        "speedup_latency_bs64": 2.0,
        "device": "cpu",
        "search_seconds": (500.0 if method.startswith("pass") else 0.5) + rng.uniform(0, 50),
        "finetune_seconds": 300.0,
        "wall_seconds": 900.0,
        "kept_channels": kept,
        "group_sizes": SIZES,
        "group_order": GROUPS,
        "search_info": {"steps": 10},
        "history": [{"epoch": 0}],
        "settings": {},
        "provenance": {},
    }


def _write(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _make_runs(root: Path) -> list[Path]:
    files = [_write(root / f"dense_s{s}" / "metrics.json", _dense(s)) for s in SEEDS]
    for m in METHODS:
        for t in TARGETS:
            for s in SEEDS:
                files.append(_write(root / f"{m}_{t}_s{s}" / "metrics.json", _pruned(m, t, s)))
    files.append(
        _write(
            root / "transfer" / "metrics.json",
            _pruned("pass_structure_transfer", 0.5, 0, source="cifar100", family="pass-transfer"),
        )
    )
    random.Random(0).shuffle(files)  # aggregation must not depend on input order
    return files


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".")]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """Aggregate and build the report once (figures are the slow part)."""
    root = tmp_path_factory.mktemp("report")
    files = _make_runs(root / "runs")
    df = aggregate(files, root / "summary.csv")
    paths = build_report(root / "summary.csv", root / "reports", metrics_files=files)
    return {"root": root, "files": files, "df": df, "paths": paths, "out": root / "reports"}


# ----------------------------------------------------------------------------- aggregate
def test_summary_columns_rows_and_order(built):
    df = built["df"]
    assert set(SUMMARY_COLUMNS) <= set(df.columns)
    assert list(df.columns[: len(SUMMARY_COLUMNS)]) == list(SUMMARY_COLUMNS)
    assert len(df) == len(built["files"]) == 2 + len(METHODS) * len(TARGETS) * len(SEEDS) + 1
    for nested in ("history", "settings", "provenance", "kept_channels", "group_sizes", "group_order", "search_info"):
        assert nested not in df.columns
    # sort: dataset, arch, target desc, method, seed
    keys = list(zip(df["dataset"], df["arch"], -df["target"], df["method"], df["seed"]))
    assert keys == sorted(keys)
    assert list(df["method"][:2]) == ["dense", "dense"] and list(df["seed"][:2]) == [0, 1]
    dense = df[df["method"] == "dense"]
    assert (dense["speedup_macs"] == 1.0).all() and (dense["speedup_latency"] == 1.0).all()
    assert (dense["search_seconds"] == 0).all() and dense["source"].isna().all()
    assert df["source"].notna().sum() == 1
    # the CSV on disk is the same table
    back = read_summary(built["root"] / "summary.csv")
    assert len(back) == len(df)
    pd.testing.assert_series_equal(back["top1"], df["top1"], check_names=False)
    assert list(back["method"]) == list(df["method"])


def test_malformed_metrics_raise_value_error_naming_the_file(tmp_path):
    good = _write(tmp_path / "ok" / "metrics.json", _dense(0))
    summary = atomic_write_text(tmp_path / "summary.csv", "previous\n")
    bad = tmp_path / "broken" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text('{"stage": "pretrain", "top1": ')
    with pytest.raises(ValueError, match="broken"):
        aggregate([good, bad], summary)
    incomplete = _pruned("pass", 0.5, 0)
    del incomplete["top1"], incomplete["search_seconds"]
    inc = _write(tmp_path / "incomplete" / "metrics.json", incomplete)
    with pytest.raises(ValueError, match="incomplete") as err:
        aggregate([good, inc], summary)
    assert "top1" in str(err.value) and "search_seconds" in str(err.value)
    # nothing was written: the previous summary is intact and no temp file is left
    assert summary.read_text() == "previous\n"
    assert _temp_files(tmp_path) == []


def test_duplicate_runs_are_rejected(tmp_path):
    a = _write(tmp_path / "a" / "metrics.json", _pruned("pass", 0.5, 0))
    b = _write(tmp_path / "b" / "metrics.json", _pruned("pass", 0.5, 0))
    with pytest.raises(ValueError, match="duplicate"):
        aggregate([a, b], tmp_path / "summary.csv")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    from passprune.files import atomic_write

    target = atomic_write_text(tmp_path / "x.txt", "old")

    def boom(fh):
        fh.write(b"half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old"
    assert _temp_files(tmp_path) == []


# ----------------------------------------------------------------------------- tables
def test_main_table_mean_std_match_pandas(built):
    df, tables = built["df"], built["out"] / "tables"
    main = pd.read_csv(tables / "main.csv")
    assert "source" not in main.columns and "pass_structure_transfer" not in set(main["method"])
    first = main.iloc[0]
    assert first["method"] == "dense" and first["n"] == 2
    sel = df[(df["method"] == "pass_noprompt") & (df["target"] == 0.3) & df["source"].isna()]
    row = main[(main["method"] == "pass_noprompt") & (main["target"] == 0.3)]
    assert len(row) == 1 and row["n"].item() == len(SEEDS)
    for col, key, scale in (
        ("top1", "top1", 1),
        ("top1_before_ft", "top1_before_ft", 1),
        ("macs", "macs_M", 1e-6),
        ("search_seconds", "search_seconds", 1),
    ):
        assert row[f"{key}_mean"].item() == pytest.approx(sel[col].mean() * scale, rel=1e-12)
        assert row[f"{key}_std"].item() == pytest.approx((sel[col] * scale).std(), rel=1e-9)
    # latency is null for one seed: mean of the rest, no std
    assert row["speedup_latency_mean"].item() == pytest.approx(sel["speedup_latency"].dropna().mean())
    assert pd.isna(row["speedup_latency_std"].item())
    # the Markdown shows the same numbers, rounded
    md = (tables / "main.md").read_text()
    expect = format_cell(sel["top1"].mean(), sel["top1"].std(), ".2f")
    assert expect in md and "±" in expect


def test_markdown_lists_every_method_and_transfer_table(built):
    md = (built["out"] / "tables" / "main.md").read_text()
    assert md.startswith("| Dataset") and "|:--" in md
    for m in ["dense", *METHODS]:
        assert f"| {m} " in md
    tr = pd.read_csv(built["out"] / "tables" / "transfer.csv")
    assert list(tr["source"]) == ["cifar100"] and tr["n"].item() == 1
    tr_md = (built["out"] / "tables" / "transfer.md").read_text()
    assert "pass_structure_transfer" in tr_md and "±" not in tr_md  # n = 1: no spread shown
    readme = (built["out"] / "README.md").read_text()
    assert md.strip() in readme and "## Transfer" in readme


def test_latex_escapes_underscores(built):
    tex = (built["out"] / "tables" / "main.tex").read_text()
    assert r"pass\_noprompt" in tex
    assert "pass_noprompt" not in tex.replace(r"\_", "")
    assert "\\toprule" in tex and "\\bottomrule" in tex and "$\\pm$" in tex and "(\\%)" in tex
    assert latex_escape("a_b & 5% #1") == r"a\_b \& 5\% \#1"


# ----------------------------------------------------------------------------- figures and README
def test_every_figure_is_a_png_and_pdf(built):
    out = built["out"]
    for stem in ("acc_vs_macs", "before_after_ft", "layerwise_sparsity", "search_cost"):
        png, pdf = out / "figures" / f"{stem}.png", out / "figures" / f"{stem}.pdf"
        assert png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG_MAGIC
        assert pdf.read_bytes()[:5] == b"%PDF-"
        assert png in built["paths"] and pdf in built["paths"]
        assert f"figures/{stem}.png" in (out / "README.md").read_text()
    assert all(p.exists() for p in built["paths"])
    assert built["paths"][-1] == out / "README.md"


def test_readme_states_how_numbers_were_made(built):
    readme = (built["out"] / "README.md").read_text()
    assert "summary.csv" in readme and "seeds {0, 1}" in readme
    assert "multiply-accumulates of convolution and linear layers" in readme
    assert "Skipped" not in readme.split("## Figures")[1]  # every figure has its data
    # these synthetic runs have no structure.json: the overlap table says so instead of being empty
    assert "_Skipped: fewer than two runs of one target and seed have a `search/structure.json`" in readme


def test_no_temp_files_left(built):
    assert _temp_files(built["root"]) == []


def test_missing_metrics_files_skip_layerwise_with_note(built, tmp_path):
    out = tmp_path / "reports"
    stale = out / "figures" / "layerwise_sparsity.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old figure")
    paths = build_report(built["root"] / "summary.csv", out)
    assert not stale.exists() and not (out / "figures" / "layerwise_sparsity.pdf").exists()
    assert stale not in paths and (out / "figures" / "acc_vs_macs.png").exists()
    readme = (out / "README.md").read_text()
    assert "_Skipped: no metrics.json files were given" in readme
    assert _temp_files(tmp_path) == []


def test_layerwise_frame_reads_kept_over_size_in_group_order(built):
    from passprune.report.figures import layerwise_frame

    lw = layerwise_frame(built["files"])
    assert len(lw) == (len(built["files"]) - len(SEEDS)) * len(GROUPS)  # dense runs have no groups
    f = next(p for p in built["files"] if p.parent.name == "pass_0.3_s1")
    m = json.loads(f.read_text())
    sel = lw[(lw["label"] == "pass") & (lw["target"] == 0.3) & (lw["seed"] == 1)].sort_values("group_index")
    assert list(sel["group"]) == GROUPS
    assert list(sel["kept_ratio"]) == [m["kept_channels"][g] / SIZES[g] for g in GROUPS]
    assert set(lw.loc[lw["family"] == "pass-transfer", "label"]) == {"pass_structure_transfer (from cifar100)"}


def test_ratio_axis_and_dense_only_summary(built, tmp_path):
    from passprune.report.figures import plot_acc_vs_macs

    png, pdf = plot_acc_vs_macs(built["df"], tmp_path / "ratio", x="ratio")
    assert png.read_bytes()[:8] == PNG_MAGIC and pdf.exists()
    # a summary with only dense runs still gives a table, and every figure is skipped with a note
    dense_only = aggregate([p for p in built["files"] if p.parent.name.startswith("dense")], tmp_path / "s.csv")
    assert list(dense_only["method"]) == ["dense", "dense"]
    paths = build_report(tmp_path / "s.csv", tmp_path / "rep")
    assert {p.name for p in paths} == {
        "main.md",
        "main.tex",
        "main.csv",
        "search_cost.md",
        "search_cost.tex",
        "search_cost.csv",
        "README.md",
    }
    readme = (tmp_path / "rep" / "README.md").read_text()
    assert readme.count("_Skipped:") == 6  # 4 figures, structure overlap, dense models (no metrics.json given)
    assert "_Not checked: no metrics.json files were given" in readme.split("## Claims")[0]  # the opening says so
    assert len(pd.read_csv(tmp_path / "rep" / "tables" / "search_cost.csv")) == 0


# ----------------------------------------------------------------------------- search cost table
def test_search_cost_table_means_and_dashes(built):
    cost = pd.read_csv(built["out"] / "tables" / "search_cost.csv")
    df = built["df"]
    assert "dense" not in set(cost["method"]) and len(cost) == len(METHODS) * len(TARGETS) + 1
    row = cost[(cost["method"] == "pass") & (cost["target"] == 0.3)]
    sel = df[(df["method"] == "pass") & (df["target"] == 0.3)]
    assert row["search_seconds_mean"].item() == pytest.approx(sel["search_seconds"].mean())
    assert row["search_steps_mean"].isna().all()  # not recorded by these runs
    md = (built["out"] / "tables" / "search_cost.md").read_text()
    assert "Search steps |" in md and "–" in md and "cifar100" in md  # the transfer run's source
    tex = (built["out"] / "tables" / "search_cost.tex").read_text()
    assert "\\toprule" in tex and r"pass\_noprompt" in tex
    assert "## Search cost" in (built["out"] / "README.md").read_text()


# ----------------------------------------------------------------------------- claims in the report
CLAIMS_YAML = Path(__file__).resolve().parent.parent / "config" / "claims.yaml"
MANY = {  # a dozen methods: method -> (family, top-1 offset in points)
    "pass": ("pass", 2.0),
    "pass_noprompt": ("pass-ablation", 1.0),
    "pass_norecur": ("pass-ablation", 0.5),
    "pass_uniform": ("pass-ablation", 0.8),
    "pass_nostats": ("pass-ablation", 1.2),
    "l1": ("baseline", 0.0),
    "fpgm": ("baseline", -0.5),
    "taylor": ("baseline", -1.0),
    "depgraph": ("baseline", 0.3),
    "greg": ("baseline", 0.2),
    "random": ("baseline", -3.0),
    "random_widths": ("control", -2.0),
    "scratch": ("control", -6.0),
}
MANY_SEEDS = range(5)


def _many_runs(root: Path) -> list[Path]:
    files = [_write(root / f"dense_s{s}" / "metrics.json", _dense(s)) for s in MANY_SEEDS]
    for m, (fam, eff) in MANY.items():
        for t in TARGETS:
            for s in MANY_SEEDS:
                run = _pruned(m, t, s, family=fam)
                run["top1"] += eff + 0.3 * s  # a seed effect shared by every method: pairing removes it
                run["val_top1"] = run["top1"] + 0.2
                if fam.startswith("pass"):
                    run.update(select_on_val=True, search_steps=150, search_images=9600)
                files.append(_write(root / f"{m}_{t}_s{s}" / "metrics.json", run))
    for s in MANY_SEEDS:
        run = _pruned("pass_structure_transfer", 0.3, s, source="cifar100", family="pass-transfer")
        run["top1"] += 2.0 + 0.3 * s
        files.append(_write(root / f"transfer_s{s}" / "metrics.json", run))
    return files


@pytest.fixture(scope="module")
def claims_built(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("claims_report")
    files = _many_runs(root / "runs")
    df = aggregate(files, root / "summary.csv")
    paths = build_report(root / "summary.csv", root / "reports", metrics_files=files, claims=CLAIMS_YAML)
    return {"root": root, "files": files, "df": df, "paths": paths, "out": root / "reports"}


def test_claims_tables_and_forest_plot_are_written(claims_built):
    from passprune.stats.claims import RESULT_COLUMNS, load_claims

    out = claims_built["out"]
    for ext in ("md", "tex", "csv"):
        assert out / "tables" / f"claims.{ext}" in claims_built["paths"]
    for ext in ("png", "pdf"):
        assert out / "figures" / f"claims_forest.{ext}" in claims_built["paths"]
    assert (out / "figures" / "claims_forest.png").read_bytes()[:8] == PNG_MAGIC
    res = pd.read_csv(out / "tables" / "claims.csv")
    assert list(res.columns) == list(RESULT_COLUMNS)
    assert list(dict.fromkeys(res["claim"])) == [c.id for c in load_claims(CLAIMS_YAML)]
    acc = res[res["claim"] == "acc_vs_best_baseline"]
    assert set(acc["versus"]) <= {"depgraph", "greg", "l1"} and (acc["n"] == len(MANY_SEEDS)).all()
    assert res.loc[res["claim"] == "control_scratch", "verdict"].tolist() == ["supported"] * len(TARGETS)
    assert res.loc[res["claim"] == "transfer_hypernet", "verdict"].tolist() == ["no data"]
    md = (out / "tables" / "claims.md").read_text()
    assert md.startswith("| Claim") and "acc_vs_best_baseline" in md and "(best baseline)" in md
    tex = (out / "tables" / "claims.tex").read_text()
    assert "\\toprule" in tex and r"acc\_vs\_best\_baseline" in tex and "$\\pm$" in tex
    assert "pass $-$ " in tex and "$>$ +1.00" in tex and "−" not in tex and ">" not in tex.replace("$>$", "")


def _opening(readme: str) -> tuple[str, str]:
    """(the lines before the README's first section, the first section's heading)."""
    head, _, rest = readme.partition("\n## ")
    return head, "## " + rest.split("\n", 1)[0]


def test_readme_starts_with_the_claims_section_and_its_rule(claims_built):
    readme = (claims_built["out"] / "README.md").read_text()
    head, first = _opening(readme)  # the dense models' verdict, one paragraph, then the claims
    assert (
        head.startswith("# Results\n\n**Dense models trained to convergence?** Plateau rule:") and first == "## Claims"
    )
    claims_part = readme.split("## How the numbers were made")[0]
    m = int(pd.read_csv(claims_built["out"] / "tables" / "claims.csv")["holm_m"].iloc[0])
    for needle in (
        "paired by seed",
        "t-interval",
        "bootstrap",
        f"Holm-adjusted over all {m} comparison(s)",
        "validation",
        "`select_on_val` true in all",
        "config/claims.yaml",
        "figures/claims_forest.png",
        "| acc_vs_best_baseline",
        "supported",
    ):
        assert needle in claims_part, needle
    assert readme.index("## Claims") < readme.index("## Main table") < readme.index("## Search cost")


def test_selection_rule_unknown_without_the_column(built):
    from passprune.report.verdicts import selection_rule_text

    assert "unknown" in selection_rule_text(built["df"])
    assert "mixed" in selection_rule_text(pd.DataFrame({"family": ["pass", "pass"], "select_on_val": [True, False]}))


def test_report_without_claims_removes_stale_claims_outputs(claims_built, tmp_path):
    import shutil

    out = tmp_path / "reports"
    shutil.copytree(claims_built["out"], out)
    paths = build_report(claims_built["root"] / "summary.csv", out)
    assert not any((out / "tables" / f"claims.{x}").exists() for x in ("md", "tex", "csv"))
    assert not (out / "figures" / "claims_forest.png").exists()
    assert "## Claims" not in (out / "README.md").read_text() and out / "README.md" in paths


def test_bad_claims_file_fails_before_writing(claims_built, tmp_path):
    from passprune.stats.claims import ClaimsError

    bad = tmp_path / "claims.yaml"
    bad.write_text(CLAIMS_YAML.read_text().replace("relation: greater", "relaton: greater", 1))
    with pytest.raises(ClaimsError, match="relaton"):
        build_report(claims_built["root"] / "summary.csv", tmp_path / "rep", claims=bad)
    assert not (tmp_path / "rep").exists()


def test_forest_plot_without_any_estimate_still_writes_a_figure(tmp_path):
    from passprune.report.figures import plot_claims_forest
    from passprune.stats.claims import Claim, evaluate_claims

    df = pd.DataFrame(
        [
            dict(
                dataset="d",
                arch="a",
                method="pass",
                family="pass",
                target=0.5,
                seed=0,
                source=None,
                top1=1.0,
                top1_before_ft=1.0,
                val_top1=1.0,
                speedup_macs=2.0,
                speedup_latency=1.5,
            )
        ]
    )
    c = Claim.from_dict(
        dict(id="x", text="t", method="pass", versus="scratch", metric="top1", relation="greater", margin=0)
    )
    png, pdf = plot_claims_forest(evaluate_claims(df, [c]), tmp_path / "forest")
    assert png.read_bytes()[:8] == PNG_MAGIC and pdf.exists()


def test_cli_claims_and_report_flags(claims_built, tmp_path, capsys):
    from passprune.cli import main

    main(
        [
            "claims",
            "--summary",
            str(claims_built["root"] / "summary.csv"),
            "--claims",
            str(CLAIMS_YAML),
            "--csv",
            str(tmp_path / "c.csv"),
        ]
    )
    out = capsys.readouterr().out
    assert "| acc_vs_best_baseline" in out and "paired by seed" in out and (tmp_path / "c.csv").exists()
    main(
        [
            "report",
            "--summary",
            str(claims_built["root"] / "summary.csv"),
            "--out",
            str(tmp_path / "r"),
            "--claims",
            str(CLAIMS_YAML),
        ]
    )
    assert (tmp_path / "r" / "tables" / "claims.md").exists()
    assert _opening((tmp_path / "r" / "README.md").read_text())[1] == "## Claims"


# ----------------------------------------------------------------------------- figures with a dozen methods
def test_method_styles_distinct_within_and_across_families(claims_built):
    from passprune.report.figures import method_styles, run_labels

    df = claims_built["df"].assign(label=lambda d: run_labels(d))
    styles = method_styles(df)
    assert set(styles) == set(df["label"])
    pairs = [(tuple(round(c, 4) for c in st.color), st.marker) for st in styles.values()]
    assert len(set(pairs)) == len(pairs)  # no two methods share colour and marker
    assert len({tuple(st.color) for st in styles.values()}) == len(styles)  # every colour distinct too
    assert styles["dense"].color[:3] == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)
    base = [st for lab, st in styles.items() if MANY.get(lab, ("",))[0] == "baseline"]
    assert len({st.marker for st in base}) == len(base) and len({st.linestyle for st in base}) == len(base)
    # a family's shades share a hue: baselines are orange (red > blue), PASS is blue (blue > red)
    assert all(st.color[0] > st.color[2] for st in base)
    assert styles["pass"].color[2] > styles["pass"].color[0]


def test_dozen_method_figures_render(claims_built):
    out = claims_built["out"] / "figures"
    for stem in ("acc_vs_macs", "before_after_ft", "layerwise_sparsity", "search_cost", "claims_forest"):
        assert (out / f"{stem}.png").stat().st_size > 5000, stem


# ----------------------------------------------------------------------------- one MACs target: points, not a curve
def _errorbars(ax) -> dict[str, tuple]:
    """label -> (x data, y data, [(low, high)] of its error bars) of every errorbar drawn on ``ax``."""
    from matplotlib.container import ErrorbarContainer

    out = {}
    for c in ax.containers:
        if isinstance(c, ErrorbarContainer):
            line, _, bars = c.lines
            segs = [(s[0][1], s[1][1]) for s in bars[0].get_segments()] if bars else []
            out[c.get_label()] = (list(line.get_xdata()), list(line.get_ydata()), segs)
    return out


def test_single_target_draws_points_with_95_intervals_not_a_curve(claims_built, tmp_path):
    import scipy.stats

    from passprune.report.figures import acc_vs_macs_figure, run_labels

    df = claims_built["df"]
    one = df[(df["target"] == 0.3) | (df["family"] == "dense")]
    labels = run_labels(one)
    fig = acc_vs_macs_figure(one)
    drawn = _errorbars(fig.axes[0])
    assert set(drawn) >= {"pass", "l1", "scratch"}
    for label, (xs, ys, segs) in drawn.items():
        assert len(xs) == 1 and len(segs) == 1  # one point per method, with its interval
        top1 = one.loc[labels == label, "top1"]
        lo, hi = scipy.stats.t.interval(0.95, len(top1) - 1, loc=top1.mean(), scale=scipy.stats.sem(top1))
        assert ys[0] == pytest.approx(top1.mean()) and segs[0] == pytest.approx((lo, hi))
    assert sorted(x for xs, _, _ in drawn.values() for x in xs) == list(range(len(drawn)))  # methods side by side
    # several targets keep the curve: one line per method through both targets, no interval bars
    curves = _errorbars(acc_vs_macs_figure(df).axes[0])
    assert {len(xs) for lab, (xs, _, _) in curves.items() if "(from" not in lab} == {len(TARGETS)}
    (tmp_path / "one").mkdir()
    one.to_csv(tmp_path / "one" / "summary.csv", index=False)
    build_report(tmp_path / "one" / "summary.csv", tmp_path / "one" / "reports")
    readme = (tmp_path / "one" / "reports" / "README.md").read_text()
    assert "### Accuracy per method" in readme and "95% t-interval" in readme and "### Accuracy vs MACs" not in readme
    assert "### Accuracy vs MACs" in (claims_built["out"] / "README.md").read_text()


# ----------------------------------------------------------------------------- search cost counts scratch's training
def _cost_runs() -> pd.DataFrame:
    """One seed's cost columns as the pipeline records them: PASS (hypernetwork steps, no weight update), a
    sparsity-training baseline (its search *is* its weight training), scratch (no search; the dense model's 468
    training steps again, after the search) and an older run without ``start_weights``."""
    rows = [
        ("pass", "pass", 100, 6400, 0, 0, "dense", 30.0),
        ("greg_tp", "baseline", 50, 3200, 50, 3200, "search", 12.0),
        ("scratch", "control", 0, 0, 468, 29952, "scratch", 0.0002),
        ("old_sparse", "baseline", 50, 3200, 50, 3200, None, 11.0),
    ]
    return pd.DataFrame(
        [
            dict(
                dataset=DS,
                arch=ARCH,
                method=m,
                family=fam,
                target=0.3,
                seed=0,
                source=None,
                search_steps=ss,
                search_images=si,
                weight_train_steps=ws,
                weight_train_images=wi,
                finetune_steps=100,
                finetune_images=6400,
                start_weights=start,
                search_seconds=sec,
            )
            for m, fam, ss, si, ws, wi, start, sec in rows
        ]
    )


def test_search_cost_counts_scratchs_training_once_and_the_sparsity_search_once(tmp_path):
    from passprune.report.figures import cost_parts
    from passprune.report.tables import search_cost_table

    runs = _cost_runs()
    table = search_cost_table(runs).set_index("method")
    assert table.loc["scratch", "total_steps_mean"] == 468 + 100  # not ~0: it trains the dense budget again
    assert table.loc["scratch", "total_images_mean"] == 29952 + 6400
    assert table.loc["greg_tp", "total_steps_mean"] == 50 + 100  # its 50 sparsity steps are its search: once
    assert table.loc["old_sparse", "total_steps_mean"] == 50 + 100  # no start_weights: same answer
    assert table.loc["pass", "total_steps_mean"] == 100 + 100
    parts = cost_parts(runs).set_index(runs["method"])
    assert parts.loc["scratch"].tolist() == [0, 468, 100, 468]  # search only, weight training, fine-tuning, outside
    assert parts.loc["greg_tp"].tolist() == [0, 50, 100, 0] and parts.loc["pass"].tolist() == [100, 0, 100, 0]
    totals = parts[["search_only", "weight_train", "finetune"]].sum(axis=1)
    assert totals.to_dict() == table["total_steps_mean"].to_dict()
    runs.to_csv(tmp_path / "summary.csv", index=False)
    build_report(tmp_path / "summary.csv", tmp_path / "rep")
    md = (tmp_path / "rep" / "tables" / "search_cost.md").read_text()
    scratch_row = next(line for line in md.splitlines() if "| scratch " in line)
    assert "568" in scratch_row and "36,352" in scratch_row
    assert "trains its architecture with the dense model's whole budget" in (tmp_path / "rep" / "README.md").read_text()


# ----------------------------------------------------------------------------- structure overlap
OV_SIZES = {"g0": 4, "g1": 8}


def _ov_run(study: Path, ds: str, run: str, method: str, kept: dict, own_search=True, **extra) -> Path:
    """A pruned run laid out as the workflow does: <study>/<ds>/<arch>/seed0/<run>/macs0.3/{metrics.json,
    search/structure.json}; ``kept`` is {group: channel indices}."""
    run_dir = study / ds / ARCH / "seed0" / run / "macs0.3"
    m = _pruned("pass", 0.3, 0) | {"dataset": ds, "method": method, "family": extra.pop("family", "pass")}
    m |= {"kept_channels": {g: len(v) for g, v in kept.items()}, "group_sizes": OV_SIZES, **extra}
    if own_search:
        _write(run_dir / "search" / "structure.json", {"arch": ARCH, "group_sizes": OV_SIZES, "kept": kept})
    return _write(run_dir / "metrics.json", m)


def _ov_study(root: Path) -> list[Path]:
    study = root / "results" / "study"
    pass_b = {"g0": [0, 1], "g1": [0, 1, 2, 3]}
    src = {"g0": [2, 3], "g1": [4, 5, 6, 7]}  # the source task's PASS structure
    return [
        _ov_run(study, "a", "pass", "pass", src),
        _ov_run(study, "b", "pass", "pass", pass_b),
        _ov_run(study, "b", "l1", "l1", {"g0": [0, 2], "g1": [0, 1, 4, 5]}, family="baseline"),
        _ov_run(study, "b", "scratch", "scratch", pass_b, family="control", start_weights="scratch"),
        _ov_run(
            study,
            "b",
            "xfer_hypernet-pass-from-a",
            "pass_hypernet_transfer",
            src,
            family="pass-transfer",
            source="a",
            base_method="pass",
        ),
        _ov_run(
            study,
            "b",
            "xfer_structure-pass-from-a",
            "pass_structure_transfer",
            src,
            own_search=False,
            family="pass-transfer",
            source="a",
            base_method="pass",
        ),
    ]


def test_structure_overlap_jaccard_per_group_and_overall_flags_identical_structures(tmp_path):
    from passprune.report.overlap import ALL, identical_sentence, overlap_frame, pair_summary, read_structures

    files = _ov_study(tmp_path)
    runs, notes = read_structures(files)
    assert len(runs) == 6 and notes == []  # the structure transfer's comes from the source's search
    xfer = next(r for r in runs if r.label.startswith("pass_structure_transfer"))
    assert xfer.kept == {"g0": frozenset({2, 3}), "g1": frozenset({4, 5, 6, 7})}
    frame = overlap_frame(runs)
    pl = frame[(frame["method_a"] == "pass") & (frame["method_b"] == "l1")].set_index("group")
    assert pl.loc["g0", "jaccard"] == pytest.approx(1 / 3)  # {0,1} vs {0,2}
    assert pl.loc["g1", "jaccard"] == pytest.approx(2 / 6)  # {0,1,2,3} vs {0,1,4,5}
    assert pl.loc[ALL, ["shared", "union"]].tolist() == [3, 9] and pl.loc[ALL, "jaccard"] == pytest.approx(3 / 9)
    assert set(frame["dataset"]) == {"b"}  # dataset a has a single run: no pair
    summary = pair_summary(frame, runs)
    ident = summary[summary["identical"]]
    pairs = {(a, b): bc for a, b, bc in zip(ident["method_a"], ident["method_b"], ident["by_construction"])}
    assert pairs == {
        ("pass_hypernet_transfer (from a)", "pass_structure_transfer (from a)"): False,
        ("pass", "scratch"): True,
    }
    text = identical_sentence(summary)
    assert "`pass_hypernet_transfer (from a)` and `pass_structure_transfer (from a)`" in text
    assert "by construction" in text and "Jaccard 1.0 in every group" in text
    # the report: tables and the README section, with the flag sentence
    aggregate(files, tmp_path / "summary.csv")
    build_report(tmp_path / "summary.csv", tmp_path / "rep", metrics_files=files)
    readme = (tmp_path / "rep" / "README.md").read_text()
    assert "## Structure overlap" in readme and text in readme
    assert len(pd.read_csv(tmp_path / "rep" / "tables" / "structure_overlap.csv")) == len(frame)
    assert "(identical)" in (tmp_path / "rep" / "tables" / "structure_overlap.md").read_text()
    # a summary-only rebuild has no structures: the table is skipped with a note and stale copies removed
    build_report(tmp_path / "summary.csv", tmp_path / "rep")
    assert not (tmp_path / "rep" / "tables" / "structure_overlap.csv").exists()
    assert not (tmp_path / "rep" / "tables" / "structure_overlap.md").exists()
    skipped = (tmp_path / "rep" / "README.md").read_text().split("## Structure overlap")[1].split("##")[0]
    assert "_Skipped: no metrics.json files were given" in skipped


def test_structure_overlap_ignores_a_structure_that_is_not_the_runs(tmp_path):
    from passprune.report.overlap import read_structures

    files = _ov_study(tmp_path)
    bad = files[2].parent / "search" / "structure.json"  # l1's: now keeps 3 channels in g0, the run kept 2
    bad.write_text(json.dumps({"arch": ARCH, "group_sizes": OV_SIZES, "kept": {"g0": [0, 1, 2], "g1": [0, 1, 4, 5]}}))
    (files[0].parent / "search" / "structure.json").unlink()  # the source search is gone: no structure transfer
    runs, notes = read_structures(files)
    assert {r.label for r in runs} == {"pass", "scratch", "pass_hypernet_transfer (from a)"}
    assert any("other channel counts" in n for n in notes) and len(notes) == 3


# ----------------------------------------------------------------------------- dense models: converged?
def test_plateau_rule_judges_a_levelled_curve_converged_and_a_rising_one_not():
    from passprune.report.dense import convergence_table, plateau_gain
    from passprune.settings import PlateauRule

    assert plateau_gain(DENSE_CURVES[0], 3) == pytest.approx(85.12 - 85.1)  # max(epochs 6-8) - max(epochs 1-5)
    assert plateau_gain(DENSE_CURVES[1], 3) == pytest.approx(80.0 - 75.0)
    assert pd.isna(plateau_gain([50.0, 60.0, 70.0], 3))  # nothing before the window: cannot tell
    rows = [
        {"dataset": DS, "arch": ARCH, "seed": s, "dense_id": "d", "epoch": e, "val_top1": v}
        for s, curve in {**DENSE_CURVES, 2: [50.0, 60.0]}.items()
        for e, v in enumerate(curve, 1)
    ]
    table = convergence_table(pd.DataFrame(rows)).set_index("seed")
    assert table.loc[0, "converged"] and not table.loc[1, "converged"] and not table.loc[2, "converged"]
    assert list(table["judged"]) == [True, True, False]
    assert list(table["best_epoch"]) == [7, 8, 2] and list(table["epochs"]) == [8, 8, 2]
    assert table.loc[0, "final_val_top1"] == 85.0 and table.loc[0, "best_val_top1"] == 85.12
    # the rule is a setting: a wider window or a larger tolerance changes the verdict
    assert convergence_table(pd.DataFrame(rows), PlateauRule(min_gain=6.0)).set_index("seed").loc[1, "converged"]
    assert not convergence_table(pd.DataFrame(rows), PlateauRule(window=5)).set_index("seed").loc[0, "converged"]
    for bad in ({"window": 0}, {"window": 2.5}, {"min_gain": -0.1}):
        with pytest.raises(ValueError, match="plateau rule"):
            PlateauRule(**bad)
    from passprune.report.dense import verdict_text

    text = verdict_text(table.reset_index(), PlateauRule())  # one converged, one rising, one too short
    assert f"**1 of 3 dense models did not** (still gaining): {DS}/{ARCH} seed 1: +5.00 (best epoch 8)." in text
    assert "**1 of 3 dense models could not be judged**: 2 epoch(s), and the rule needs more than 3." in text
    assert verdict_text(table.reset_index().iloc[[1]], PlateauRule()).startswith("**The dense model did not**")


def test_report_draws_dense_curves_and_says_which_dense_model_did_not_converge(built):
    out = built["out"]
    table = pd.read_csv(out / "tables" / "dense_convergence.csv")
    assert list(table["seed"]) == [0, 1] and list(table["converged"]) == [True, False]
    assert list(table["epochs"]) == [8, 8] and list(table["best_epoch"]) == [7, 8]
    assert list(table["plateau_window"]) == [3, 3] and list(table["plateau_min_gain"]) == [0.2, 0.2]
    history = pd.read_csv(out / "tables" / "dense_history.csv")
    assert len(history) == 16 and list(history.loc[history["seed"] == 1, "val_top1"]) == DENSE_CURVES[1]
    for ext, magic in (("png", PNG_MAGIC), ("pdf", b"%PDF-")):
        fig = out / "figures" / f"dense_curves.{ext}"
        assert fig.read_bytes()[: len(magic)] == magic and fig in built["paths"]
    readme = (out / "README.md").read_text()
    opening = readme.split("## How the numbers were made")[0].split("## Dense models")[0]
    assert "Plateau rule: a dense model has converged when the best validation top-1 of its last 3 epochs" in opening
    assert "less than 0.2 points" in opening
    assert f"**1 of 2 dense models did not** (still gaining): {DS}/{ARCH} seed 1: +5.00 (best epoch 8)" in opening
    section = readme.split("## Dense models")[1].split("\n## ")[0]
    assert "figures/dense_curves.png" in section and "| **no**      |" in section and "| yes         |" in section


def test_every_dense_model_converged_is_said_so(built, tmp_path):
    from passprune.settings import PlateauRule

    build_report(built["root"] / "summary.csv", tmp_path / "r", metrics_files=built["files"], plateau=PlateauRule(3, 6))
    readme = (tmp_path / "r" / "README.md").read_text()
    assert "less than 6 points" in readme and "**All 2 dense models met it** (gains +0.02 to +5.00 points)." in readme
    assert list(pd.read_csv(tmp_path / "r" / "tables" / "dense_convergence.csv")["converged"]) == [True, True]


# ----------------------------------------------------------------------------- committed snapshots rebuilt in place
def test_snapshot_rebuild_keeps_run_file_figures_adds_notes_and_is_idempotent(claims_built, tmp_path):
    import shutil

    from passprune.report.snapshot import claims_of, rebuild_snapshot

    snap = tmp_path / "reports" / "study"  # as scripts/snapshot.sh lays it out: the report + its summary.csv
    shutil.copytree(claims_built["out"], snap)
    shutil.copy(claims_built["root"] / "summary.csv", snap / "summary.csv")
    layerwise = (snap / "figures" / "layerwise_sparsity.png").read_bytes()
    (snap / "NOTES.md").write_text("Methods l1, greg were renamed l1_tp, greg_tp.\n")
    assert Path(claims_of(snap)).resolve() == CLAIMS_YAML.resolve()  # the claims file the README names
    rebuild_snapshot(snap)
    readme = (snap / "README.md").read_text()
    assert readme.startswith("# Results\n\n## About this snapshot\n\nMethods l1, greg were renamed")
    assert (snap / "figures" / "layerwise_sparsity.png").read_bytes() == layerwise  # not redrawable: kept
    lw = readme.split("### Layer-wise kept ratio")[1].split("###")[0]
    assert "_Kept from the build that had the runs' metrics.json files" in lw and "figures/layerwise_sparsity.png" in lw
    assert "from `summary.csv`" in readme and "## Claims" in readme  # its own summary, its own claims file
    # the dense curves are redrawn and re-judged from the snapshot's own dense_history.csv
    assert "`tables/dense_history.csv`, kept from the build that had them" in readme
    assert (snap / "figures" / "dense_curves.png").read_bytes()[:8] == PNG_MAGIC
    assert "did not** (still gaining)" in readme.split("## Claims")[0]
    before = {p: p.read_bytes() for p in snap.rglob("*") if p.is_file()}
    rebuild_snapshot(snap)
    assert {p: p.read_bytes() for p in snap.rglob("*") if p.is_file()} == before  # a rebuild changes nothing
    # a figure the folder does not have cannot be kept: skipped, as in any summary-only build
    for ext in ("png", "pdf"):
        (snap / "figures" / f"layerwise_sparsity.{ext}").unlink()
    rebuild_snapshot(snap)
    assert "_Skipped: no metrics.json files were given" in (snap / "README.md").read_text()


def test_snapshot_rebuilt_with_the_runs_files_draws_what_a_summary_cannot(built, tmp_path, monkeypatch):
    """``--runs-from``: the summary's metrics_file paths, read under the checkout the study ran in, give the
    layer-wise figure and the dense curves back; a checkout without them is an error naming the option."""
    import shutil

    from passprune.report.snapshot import main, rebuild_snapshot

    checkout = tmp_path / "checkout"
    shutil.copytree(built["root"] / "runs", checkout / "results" / "runs")
    monkeypatch.chdir(checkout)
    files = sorted(Path("results/runs").rglob("metrics.json"))  # relative, as Snakemake names them
    snap = tmp_path / "reports" / "study"
    aggregate(files, snap / "summary.csv")
    build_report(snap / "summary.csv", snap)  # summary only: no layer-wise figure, no dense curves
    assert not (snap / "figures" / "dense_curves.png").exists()
    monkeypatch.chdir(tmp_path)  # the repository root of another checkout
    rebuild_snapshot(snap, runs_from=checkout)
    readme = (snap / "README.md").read_text()
    assert (snap / "figures" / "dense_curves.png").exists() and (snap / "figures" / "layerwise_sparsity.png").exists()
    assert "the pretraining jobs' `metrics.json`" in readme and "_Kept from" not in readme
    assert list(pd.read_csv(snap / "tables" / "dense_convergence.csv")["converged"]) == [True, False]
    with pytest.raises(FileNotFoundError, match="give --runs-from the checkout the study ran in"):
        main([str(snap), "--runs-from", str(tmp_path / "elsewhere")])


def test_claims_5seeds_snapshot_names_its_baselines_as_registered():
    """The committed claims-5seeds snapshot ran the Torch-Pruning-style baselines: its summary, tables and README
    call them l1_tp, greg_tp, depgraph_tp (the config's and the registry's names), never l1/greg/depgraph, which
    are the published methods of claims-faithful."""
    import re

    import yaml

    repo = Path(__file__).resolve().parent.parent
    snap = repo / "reports" / "claims-5seeds"
    df = read_summary(snap / "summary.csv")
    config = yaml.safe_load((repo / "config" / "claims-5seeds.yaml").read_text())
    registered = yaml.safe_load((repo / "workflow" / "registry.yaml").read_text())["methods"]
    pruned = df[df["family"] != "dense"]
    assert set(pruned["method"]) == set(config["methods"]) and set(pruned["method"]) <= set(registered)
    assert (pruned["base_method"] == pruned["method"]).all()
    old = re.compile(r"(?<![\w-])(l1|greg|depgraph)(?![\w-]|\\_)")  # LaTeX writes l1_tp as l1\_tp
    for f in [*snap.glob("tables/*"), snap / "README.md"]:
        text = f.read_text()
        if f.name == "README.md":  # the snapshot's note names the old names on purpose
            text = text.replace((snap / "NOTES.md").read_text().strip(), "")
        assert not old.search(text), f"{f.name}: {old.search(text).group(0)!r}"


def _twin(seed: int, extra: float) -> dict:
    """Seed ``seed``'s dense model trained twice as long (16 epochs): its curve ends ``extra`` points above the
    8-epoch model's best."""
    m = _dense(seed)
    curve = DENSE_CURVES[seed % 2]
    best = max(curve)
    m["history"] = [
        {"epoch": e, "val_top1": v, "lr": 0.1}
        for e, v in enumerate(curve + [best + extra * k / 8 for k in range(1, 9)], 1)
    ]
    return m


@pytest.mark.parametrize("extras, converged", [((0.1, 0.3), True), ((1.0, 2.0), False)])
def test_longer_twins_decide_convergence_and_the_plateau_rule_is_only_information(tmp_path, extras, converged):
    """With a longer twin per seed (``pretrain.convergence_epochs``), the verdict is the twins' mean gain against
    LongerRule's 0.5 points, paired by seed, not the plateau rule (which seed 1's rising 8-epoch curve fails)."""
    from passprune.report.dense import longer_summary, longer_table, write_dense
    from passprune.settings import LongerRule

    files = [_write(tmp_path / f"d{s}" / "m8" / "metrics.json", _dense(s)) for s in SEEDS]
    files += [_write(tmp_path / f"d{s}" / "m16" / "metrics.json", _twin(s, x)) for s, x in zip(SEEDS, extras)]
    written, opening, section = write_dense(files, tmp_path / "out")
    longer = pd.read_csv(tmp_path / "out" / "tables" / "dense_longer.csv")
    assert (
        list(longer["seed"]) == [0, 1]
        and list(longer["epochs"]) == [8, 8]
        and list(longer["longer_epochs"]) == [16, 16]
    )
    assert list(longer["gain"]) == pytest.approx(list(extras)) and set(longer["longer_dense_id"]) == {"m16"}
    summary = longer_summary(longer_table(pd.read_csv(tmp_path / "out" / "tables" / "dense_convergence.csv")))
    assert summary.loc[0, "mean_gain"] == pytest.approx(sum(extras) / 2) and summary.loc[0, "converged"] == converged
    head = opening[0]
    assert head.startswith("**Dense models trained to convergence?** Rule: the study's dense models have converged")
    assert ("**converged**" in head) == converged and ("**not converged** (still gaining)" in head) != converged
    assert f"8 → 16 epochs gained {sum(extras) / 2:+.2f} points [" in head
    # the plateau rule is judged on the study's own (8-epoch) models only: seed 1 is still rising there
    assert "For information, the plateau rule" in head and "**1 of 2 dense models did not**" in head
    assert (
        any("longer twin" in line for line in section) and tmp_path / "out" / "tables" / "dense_longer.csv" in written
    )
    # the rule is a setting: a tolerance of 3 points calls both cases converged
    _, opening3, _ = write_dense(files, tmp_path / "out3", longer_rule=LongerRule(min_gain=3.0))
    assert "**converged**" in opening3[0] and "less than 3 points higher" in opening3[0]
    with pytest.raises(ValueError, match="longer-training rule"):
        LongerRule(min_gain=-1)
