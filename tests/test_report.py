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

from passprune.io import atomic_write_text
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


def _dense(seed: int) -> dict:
    top1 = 93.0 + 0.3 * seed
    return {"stage": "pretrain", "dataset": DS, "arch": ARCH, "seed": seed, "method": "dense", "family": "dense",
            "target": 1.0, "top1": top1, "top1_before_ft": top1, "val_top1": top1 + 0.1, "macs": DENSE_MACS,
            "macs_tp": DENSE_MACS, "params": DENSE_PARAMS, "train_seconds": 100.0 + seed, "wall_seconds": 120.0,
            "history": [{"epoch": 0, "loss": 1.0}], "settings": {"train": {"epochs": 1}},
            "provenance": {"git_commit": "abc"}}


def _pruned(method: str, target: float, seed: int, source: str | None = None, family: str | None = None) -> dict:
    rng = random.Random(f"{method}{target}{seed}{source}")
    macs = DENSE_MACS * target * (0.995 + 0.004 * rng.random())
    kept = {g: min(SIZES[g], max(1, round(SIZES[g] * (target ** 0.5 + 0.1 * (i - 2.5) / 2.5)) + rng.randint(-2, 2)))
            for i, g in enumerate(GROUPS)}
    return {
        "stage": "finetune", "dataset": DS, "arch": ARCH, "seed": seed, "method": method,
        "family": family or METHODS[method], "target": target, "source": source,
        "top1": 90.0 + 5 * target + rng.uniform(-1, 1), "top1_before_ft": 30.0 + 40 * target + rng.uniform(-5, 5),
        "val_top1": 91.0, "val_top1_before_ft": 40.0, "best_epoch": 3,
        "macs": macs, "dense_macs": DENSE_MACS, "macs_ratio": macs / DENSE_MACS, "speedup_macs": DENSE_MACS / macs,
        "macs_tp": macs, "params": int(DENSE_PARAMS * target), "dense_params": DENSE_PARAMS,
        "speedup_latency": None if seed == 1 else 1.0 / target * 0.8,
        "latency_ms_bs1": 2.0, "latency_ms_bs64": 10.0, "latency_ms_dense_bs1": 3.0, "latency_ms_dense_bs64": 20.0,
        "speedup_latency_bs1": 1.5, "speedup_latency_bs64": 2.0, "device": "cpu",
        "search_seconds": (500.0 if method.startswith("pass") else 0.5) + rng.uniform(0, 50),
        "finetune_seconds": 300.0, "wall_seconds": 900.0,
        "kept_channels": kept, "group_sizes": SIZES, "group_order": GROUPS,
        "search_info": {"steps": 10}, "history": [{"epoch": 0}], "settings": {}, "provenance": {},
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
    files.append(_write(root / "transfer" / "metrics.json",
                        _pruned("pass_structure_transfer", 0.5, 0, source="cifar100", family="pass-transfer")))
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
    for nested in ("history", "settings", "provenance", "kept_channels", "group_sizes", "group_order",
                   "search_info"):
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
    from passprune.io import atomic_write

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
    for col, key, scale in (("top1", "top1", 1), ("top1_before_ft", "top1_before_ft", 1),
                            ("macs", "macs_M", 1e-6), ("search_seconds", "search_seconds", 1)):
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
    assert "Skipped" not in readme


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
    assert {p.name for p in paths} == {"main.md", "main.tex", "main.csv", "README.md"}
    assert (tmp_path / "rep" / "README.md").read_text().count("_Skipped:") == 4
