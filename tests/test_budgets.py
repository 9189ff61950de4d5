"""Fine-tuning budgets as a dimension of the plan, and claims judged per budget.

* Planning (in-process, through passprune.study): a study that lists budgets plans its dense models and
  searches once and every fine-tuning (transfer runs included) once per budget, each in its ``ft-<budget>``
  folder with that budget's finetune section; a study without budgets plans no budget anywhere.
* ``matched_total_steps``: a weight-training baseline's fine-tuning is shortened by its search's steps, counted
  as the search counts them (checked against the runs committed under reports/); one-shot and transfer runs
  are untouched; a budget too short for it is an error before any job runs.
* One Snakemake dry run of a two-budget study proves the rules are wired to the plan.
* The summary carries the budget as columns, one row per run; claims come out per budget with Holm's family
  formed within a budget, and the report writes the budget figure and opens with the verdicts that change;
  the dense models, shared by every budget, are judged once each (learning curves, plateau rule).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake_output import planned_jobs

import passprune.study as S
from passprune.settings import JobSettings

REPO = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
#: Two budgets on config/test.yaml's 1,000 training images (15 full batches of 64 per epoch).
BUDGETS = [{"name": "s5", "max_steps_per_epoch": 5}, {"name": "e2", "epochs": 2, "lr": 0.02}]
#: Rules that do not depend on the fine-tuning budget, and those that run once per budget.
ONCE = ("pretrain", "search", "search_pass", "transfer_hypernet_search", "aggregate", "report", "all")
PER_BUDGET = ("finetune", "transfer_structure", "finetune_transfer")


def _budget_config(**extra) -> dict:
    cfg = copy.deepcopy(BASE)
    cfg["methods"]["scratch"] = {}  # the control that replays the dense budget, at every budget
    cfg["finetune_budgets"] = copy.deepcopy(BUDGETS)
    cfg.update(extra)
    return cfg


def _finetune_jobs(study) -> list[S.Job]:
    return [j for j in S.jobs(study) if j.stage == "finetune"]


# ----------------------------------------------------------------------------- planning
def test_a_study_without_budgets_plans_no_budget():
    """No budget folder, wildcard value or settings key: the layout and --settings strings of before."""
    for study in (S.check(BASE), S.load(REPO / "config" / "config.yaml")):
        assert study.budgets == [None]
        for j in S.jobs(study):
            assert j.budget is None and not any("/ft-" in o for o in j.outputs), j
            assert "budget" not in j.settings, j
            if j.stage == "finetune":
                assert j.settings["finetune"] == study.stage_train(j.dataset, "finetune")


def test_dense_models_and_searches_once_finetuning_once_per_budget():
    plain, study = S.check(BASE | {"methods": _budget_config()["methods"]}), S.check(_budget_config())
    before, after = S.counts(S.jobs(plain)), S.counts(S.jobs(study))
    assert {r: after[r] for r in ONCE} == {r: before[r] for r in ONCE}
    assert {r: after[r] for r in PER_BUDGET} == {r: 2 * before[r] for r in PER_BUDGET}
    assert [S.dense_id(study, d, "resnet20") for d in ("fashion_mnist", "fashion_mnist_b")] == [
        S.dense_id(plain, d, "resnet20") for d in ("fashion_mnist", "fashion_mnist_b")
    ]
    by_run: dict[tuple, dict[str, S.Job]] = {}
    for j in _finetune_jobs(study):
        assert j.budget in ("s5", "e2") and j.outputs[0].endswith(f"/ft-{j.budget}/model.pt"), j
        by_run.setdefault((j.dataset, j.seed, j.run, j.target), {})[j.budget] = j
    for run, pair in by_run.items():
        assert set(pair) == {"s5", "e2"}, run
        assert pair["s5"].deps == pair["e2"].deps, run  # the same dense model and search
        s5, e2 = pair["s5"].settings, pair["e2"].settings
        assert s5["budget"] == {"name": "s5", "steps": 5} and e2["budget"] == {"name": "e2", "steps": 30}
        assert s5["finetune"] == {**BASE["finetune"], "max_steps_per_epoch": 5}
        assert e2["finetune"] == {**BASE["finetune"], "epochs": 2, "lr": 0.02}
    finetuned = {f"{os.path.dirname(j.outputs[0])}/metrics.json" for j in _finetune_jobs(study)}
    assert {f for f in S.all_metrics(study) if "/ft-" in f} == finetuned  # the summary reads every budget's run


def test_convergence_twins_are_planned_once_per_seed_and_read_only_by_the_report():
    """pretrain.convergence_epochs adds one longer twin per dense model: same settings but the epochs, its own
    folder; the report reads it, the summary and every method's job do not; a twin no longer than the dense
    model is a config error naming the key."""
    cfg = copy.deepcopy(BASE)
    epochs = cfg["pretrain"]["train"]["epochs"]
    cfg["pretrain"]["convergence_epochs"] = 2 * epochs
    plain, study = S.check(BASE), S.check(cfg)
    before, after = S.counts(S.jobs(plain)), S.counts(S.jobs(study))
    pairs = len(study.grid_pairs()) * len(study.seeds)
    assert after["pretrain"] == before["pretrain"] + pairs and sum(after.values()) == sum(before.values()) + pairs
    twins = [j for j in S.jobs(study) if j.stage == "pretrain" and j.settings["train"]["epochs"] == 2 * epochs]
    assert len(twins) == pairs
    for j in twins:
        dense = S.job_settings(study, "pretrain", dataset=j.dataset, arch=j.arch)
        assert j.settings == {**dense, "train": {**dense["train"], "epochs": 2 * epochs}}
        folder = S.twin_dense_dir(study, j.dataset, j.arch, j.seed)
        assert j.outputs[0] == f"{folder}/model.pt" and folder != S.dense_dir(study, j.dataset, j.arch, j.seed)
        # what the pretrain rule hands the job when its dense_id wildcard names the twin
        wc = {"dataset": j.dataset, "arch": j.arch, "dense_id": os.path.basename(folder)}
        assert S.job_settings(study, "pretrain", **wc) == j.settings
    twin_files = set(S.twin_metrics(study))
    assert len(twin_files) == pairs and not twin_files & set(S.all_metrics(study))
    assert S.report_metrics(study) == S.all_metrics(study) + S.twin_metrics(study)
    keys = {j.key: j for j in S.jobs(study)}
    readers = {j.rule for j in keys.values() for d in j.deps if d in {t.key for t in twins}}
    assert readers == {"report"}
    assert S.dense_id(study, "fashion_mnist", "resnet20") == S.dense_id(plain, "fashion_mnist", "resnet20")
    assert S.twin_metrics(plain) == [] and S.twin_dense_id(plain, "fashion_mnist", "resnet20") is None
    cfg["pretrain"]["train"]["epochs"] = cfg["pretrain"]["convergence_epochs"] = 3
    with pytest.raises(S.StudyError, match=r"pretrain.convergence_epochs: .* must exceed the dense models"):
        S.check(cfg)


def test_a_budget_overrides_a_datasets_own_finetune_section():
    cfg = _budget_config(dataset_overrides={"fashion_mnist": {"finetune": {"lr": 0.5, "epochs": 4}}})
    study = S.check(cfg)
    e2 = S.job_settings(study, "finetune", dataset="fashion_mnist", budget="e2", method="pass")
    s5 = S.job_settings(study, "finetune", dataset="fashion_mnist", budget="s5", method="pass")
    assert (e2["finetune"]["lr"], e2["finetune"]["epochs"]) == (0.02, 2)  # the budget is the study's variable
    assert (s5["finetune"]["lr"], s5["finetune"]["epochs"], s5["budget"]["steps"]) == (0.5, 4, 20)


def test_the_job_reads_its_budget_from_its_settings():
    """What the workflow hands a fine-tuning job parses as the job parses it: the budget is recorded, the
    training reads only the finetune section."""
    study = S.check(_budget_config(matched_total_steps=True))
    raw = S.job_settings(study, "finetune", dataset="fashion_mnist", budget="e2", method="bn_scale_tp")
    parsed = JobSettings.from_dict(json.loads(S.settings_json(raw)), "finetune")
    assert (parsed.budget.name, parsed.budget.steps, parsed.budget.weight_train_steps) == ("e2", 30, 3)
    assert (parsed.finetune.train().epochs, parsed.finetune.train().max_steps_per_epoch) == (2, 13)


# ----------------------------------------------------------------------------- matched total steps
def test_matched_total_steps_shortens_only_weight_training_runs():
    study = S.check(_budget_config(matched_total_steps=True))
    for j in _finetune_jobs(study):
        f, budget = j.settings["finetune"], j.settings["budget"]
        w = S.weight_train_steps(study, j.dataset, j.run) if j.rule == "finetune" else 0
        assert w == (3 if j.run in ("bn_scale_tp", "depgraph_tp", "greg_tp") else 0), j.run
        assert budget.get("weight_train_steps", 0) == w
        full = {"s5": 5, "e2": 30}[j.budget]
        epochs = f["epochs"]
        cap = f.get("max_steps_per_epoch") or 15
        assert epochs * min(cap, 15) == (full if not w else (full - w) // epochs * epochs), j
    assert S.check(_budget_config()).config.get("matched_total_steps") is None  # optional, off when absent


@pytest.mark.parametrize(
    "config, study", [("claims-faithful.yaml", "claims-faithful"), ("config.yaml", "embedded-default")]
)
def test_steps_are_counted_as_the_runs_counted_them(config, study):
    """Planning's count of a method's weight-training steps and of the fine-tuning budget equals what the
    committed runs recorded (reports/<study>/summary.csv), method by method."""
    st = S.load(REPO / "config" / config)
    df = pd.read_csv(REPO / "reports" / study / "summary.csv")
    runs = df[(df["family"] != "dense") & df["source"].isna() & (df["start_weights"] != "scratch")]
    assert not runs.empty
    for (d, method), g in runs.groupby(["dataset", "method"]):
        if method not in st.labels:
            continue
        assert set(g["weight_train_steps"].fillna(0)) == {S.weight_train_steps(st, d, method)}, method
        assert set(g["finetune_steps"]) == {S.finetune_steps(st, d, st.stage_train(d, "finetune"))}, method


def test_a_budget_too_short_for_matched_steps_is_an_error():
    cfg = _budget_config(matched_total_steps=True)
    cfg["finetune_budgets"] = [{"name": "s3", "max_steps_per_epoch": 3}, {"name": "s3", "epochs": 3}]
    with pytest.raises(S.StudyError, match="the name 's3' is given 2 times"):
        S.check(cfg)
    cfg["finetune_budgets"][1]["name"] = "e3"
    with pytest.raises(S.StudyError, match="bn_scale_tp's 3 weight-training steps on fashion_mnist leave 0 of"):
        S.check(cfg)


def test_the_registry_states_which_methods_train_weights():
    from passprune.methods import get_method, list_methods

    caps = S.check(BASE).caps
    trains = {m for m in list_methods() if get_method(m).trains_weights and not get_method(m).transfer_only}
    assert set(caps.weight_train) == trains and trains >= {"slimming", "greg", "depgraph", "bn_scale_tp"}
    for m in trains:
        d = get_method(m).defaults
        assert caps.weight_train[m] == {"epochs": d["epochs"], "max_steps_per_epoch": d["max_steps_per_epoch"]}


# ----------------------------------------------------------------------------- through Snakemake
def test_snakemake_plans_each_budget_as_the_study_does(tmp_path):
    """The rules bind the budget folders and settings: Snakemake's dry run of a two-budget study (with matched
    total steps and the scratch control) plans exactly the study's jobs, with exactly its --settings."""
    cfg = _budget_config(matched_total_steps=True)
    configfile = tmp_path / "two-budgets.yaml"
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "snakemake", "-n", "-p", "--quiet", "reason", "--cores", "1"]
    cmd += ["--configfile", str(configfile), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path / "work")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    job_list = S.jobs(S.check(cfg))
    expected = {(j.rule, os.path.dirname(j.outputs[0]), S.settings_json(j.settings)) for j in job_list if j.stage}
    assert planned_jobs(out) == expected
    assert "macs0.5/ft-e2.log" in out and "/search/structure.json" in out


# ----------------------------------------------------------------------------- summary, claims, report
def _record(method: str, budget: dict | None, family: str = "baseline", seed: int = 0) -> dict:
    rec = {"stage": "finetune", "dataset": "fashion_mnist", "arch": "resnet20", "seed": seed, "method": method}
    rec |= {"family": family, "target": 0.5, "top1": 80.0, "top1_before_ft": 20.0, "val_top1": 81.0}
    rec |= {"macs": 1e6, "params": 1e4, "speedup_macs": 2.0, "search_seconds": 1.0, "history": [{"epoch": 1}]}
    return rec | {"settings": {"finetune": {"epochs": 2, "lr": 0.02}} | ({"budget": budget} if budget else {})}


def test_the_summary_has_one_row_per_run_and_budget_columns(tmp_path):
    from passprune.records import write_record
    from passprune.report.aggregate import aggregate, budget_names, read_summary

    files = []
    for i, (method, budget) in enumerate(
        [("l1", {"name": "b2", "steps": 200}), ("l1", {"name": "b1", "steps": 100}), ("l1", None)]
    ):
        files.append(write_record(tmp_path / f"r{i}" / "metrics.json", _record(method, budget)))
    with pytest.raises(ValueError, match="duplicate run"):  # a second l1 run of seed 0 at budget b1
        aggregate(
            files + [write_record(tmp_path / "dup" / "metrics.json", _record("l1", {"name": "b1"}))], tmp_path / "x.csv"
        )
    df = aggregate(files[:2], tmp_path / "summary.csv")
    assert list(df["budget"]) == ["b1", "b2"] and list(df["budget_steps"]) == [100, 200]
    assert (
        set(df["budget_epochs"]) == {2} and set(df["budget_lr"]) == {0.02} and set(df["budget_schedule"]) == {"cosine"}
    )
    assert budget_names(read_summary(tmp_path / "summary.csv")) == ["b1", "b2"]
    plain = aggregate([files[2]], tmp_path / "plain.csv")
    assert not any(c.startswith("budget") for c in plain.columns)  # a study without budgets: no new column


def _budget_summary(tmp_path: Path) -> Path:
    """claims-faithful's committed summary as three budgets: s100 its own runs, s468 and s1560 the same runs
    with PASS's top-1 raised by exactly 2 and 4 points (so its paired differences move by exactly that)."""
    df = pd.read_csv(REPO / "reports" / "claims-faithful" / "summary.csv")
    parts = [df[df["family"] == "dense"]]
    for name, steps, shift in (("s1560", 1560, 4.0), ("s100", 100, 0.0), ("s468", 468, 2.0)):
        runs = df[df["family"] != "dense"].copy()
        runs = runs.assign(budget=name, budget_steps=steps, budget_weight_train_steps=0)
        runs = runs.assign(budget_epochs=max(1, steps // 156), budget_lr=0.02, budget_schedule="cosine")
        runs.loc[runs["method"] == "pass", "top1"] += shift
        parts.append(runs)
    path = tmp_path / "summary.csv"
    pd.concat(parts, ignore_index=True).to_csv(path, index=False)
    return path


def test_claims_come_out_per_budget_with_holm_within_a_budget(tmp_path):
    from passprune.report.aggregate import budget_rows, read_summary
    from passprune.stats.claims import evaluate_claims, evaluate_claims_by_budget, load_claims

    claims = load_claims(REPO / "config" / "claims.yaml")
    df = read_summary(_budget_summary(tmp_path))
    res = evaluate_claims_by_budget(df, claims)
    assert list(res.columns[res.columns.get_loc("target") :][:3]) == ["target", "budget", "budget_steps"]
    assert list(dict.fromkeys(res["budget"])) == ["s100", "s468", "s1560"]  # fewest steps first
    for b in ("s100", "s468", "s1560"):
        alone = evaluate_claims(budget_rows(df, b), claims)  # the study run at that budget alone
        mine = res[res["budget"] == b].drop(columns=["budget", "budget_steps"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone)
        assert (mine["holm_m"] == int((mine["n"] >= 3).sum())).all()
    acc = res[res["claim"] == "acc_vs_best_baseline"].set_index("budget")
    assert acc.loc["s468", "mean_diff"] == pytest.approx(acc.loc["s100", "mean_diff"] + 2)
    assert acc.loc["s1560", "ci_low"] == pytest.approx(acc.loc["s100", "ci_low"] + 4)
    assert list(acc["verdict"]) == ["contradicted", "inconclusive", "supported"]
    plain = read_summary(REPO / "reports" / "claims-faithful" / "summary.csv")
    pd.testing.assert_frame_equal(evaluate_claims_by_budget(plain, claims), evaluate_claims(plain, claims))


def test_the_report_opens_with_the_verdicts_that_change(tmp_path):
    from passprune.report.build import build_report

    out = tmp_path / "report"
    build_report(_budget_summary(tmp_path), out, [], REPO / "config" / "claims.yaml")
    assert (out / "figures" / "claims_budget.png").is_file()
    claims = pd.read_csv(out / "tables" / "claims.csv")
    assert set(claims["budget"]) == {"s100", "s468", "s1560"} and (claims.groupby("budget").size() == 12).all()
    readme = (out / "README.md").read_text()
    assert readme.index("## Fine-tuning budgets") < readme.index("## Claims")
    changes = readme[readme.index("**Verdicts that change with the budget:**") : readme.index("**The same at")]
    assert "`acc_vs_best_baseline`" in changes and "contradicted at s100" in changes and "supported at s1560" in changes
    assert "`before_ft_vs_best_baseline`" not in changes
    assert "**shared fine-tuning**" in readme and "cosine from 0.02 to 0 over 1,560 steps" in readme
    main = pd.read_csv(out / "tables" / "main.csv")
    assert sorted(set(main["arch"])) == [
        f"resnet20 · FT {i}/3: {b}" for i, b in enumerate(("s100", "s468", "s1560"), 1)
    ]
    assert (main.groupby("arch")["method"].apply(lambda m: (m == "dense").sum()) == 1).all()


def test_a_budget_studys_report_judges_each_dense_model_once(tmp_path):
    """The dense models are shared by every budget: their learning curves and plateau verdict come out once per
    model, from all budgets' metrics.json files, and open the README beside the budgets."""
    from passprune.records import write_record
    from passprune.report.aggregate import aggregate
    from passprune.report.build import build_report

    curves = {0: [70.0, 80.0, 84.0, 85.0, 85.1, 85.05, 85.12], 1: [60.0, 70.0, 75.0, 78.0, 80.0, 82.0, 84.0]}
    files = []
    for seed, curve in curves.items():
        dense = {"stage": "pretrain", "dataset": "fashion_mnist", "arch": "resnet20", "seed": seed, "method": "dense"}
        dense |= {"family": "dense", "target": 1.0, "top1": curve[-1], "top1_before_ft": curve[-1], "macs": 2e6}
        dense |= {"params": 2e4, "val_top1": max(curve)}
        dense |= {"history": [{"epoch": e, "val_top1": v} for e, v in enumerate(curve, 1)]}
        files.append(write_record(tmp_path / "_dense" / f"seed{seed}" / "abc" / "metrics.json", dense))
        for name, steps in (("s100", 100), ("s468", 468)):
            run = tmp_path / f"seed{seed}" / "l1" / "macs0.5" / f"ft-{name}" / "metrics.json"
            files.append(write_record(run, _record("l1", {"name": name, "steps": steps}, seed=seed)))
    aggregate(files, tmp_path / "summary.csv")
    build_report(tmp_path / "summary.csv", tmp_path / "report", files)
    table = pd.read_csv(tmp_path / "report" / "tables" / "dense_convergence.csv")
    assert list(table["seed"]) == [0, 1] and list(table["converged"]) == [True, False]
    readme = (tmp_path / "report" / "README.md").read_text()
    opening = readme[: readme.index("## Fine-tuning budgets")]
    assert "**1 of 2 dense models did not** (still gaining): fashion_mnist/resnet20 seed 1: +6.00" in opening
