"""End-to-end: the whole DAG on config/test.yaml (every stage, both transfer kinds), in a scratch working
directory, then the checks a study relies on: one summary row per run at its MACs target, the report, the
MLflow mirror, loadable pruned models that reproduce their recorded accuracy, and Snakemake's bookkeeping
(nothing to redo; one forced run redoes only itself and what reads it).

    pytest -m e2e tests/test_workflow.py      # a few minutes on 2 CPU cores

The run is the session fixture ``ci_study`` (tests/conftest.py): once per session, shared with every test that
needs a finished study. The data root `data` is relative to the working directory, a link to the session's
decoded Fashion-MNIST. The tests run in file order: the bookkeeping ones rerun jobs and leave the files as
they were.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TEST_CONFIG, job_logs, run_snakemake
from snakemake_output import job_counts

REPO = Path(__file__).resolve().parents[1]
CONFIG = TEST_CONFIG
CFG = yaml.safe_load(CONFIG.read_text())
FIGURES = ("acc_vs_macs", "before_after_ft", "layerwise_sparsity", "search_cost")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STUDY = f"results/{CFG['study']}"  # every study writes under its own folder

pytestmark = pytest.mark.e2e


def fmt_target(t) -> str:
    return f"{float(t):g}"


def expected_runs(cfg: dict) -> set[tuple]:
    """(dataset, arch, seed, method label, target, source) of every row summary.csv must have; mirrors
    all_metrics() in workflow/rules/common.smk: the transfer tasks' own dense models are not rows."""
    rows = set()
    for d in cfg["datasets"]:
        for a in cfg["archs"]:
            for s in cfg["seeds"]:
                rows.add((d, a, s, "dense", "1", None))
                for m in cfg["methods"]:
                    for t in cfg["targets"]:
                        rows.add((d, a, s, m, fmt_target(t), None))
    for tr in cfg.get("transfer", []):
        for kind in tr["kinds"]:
            for a in tr.get("archs", cfg["archs"]):
                for s in cfg["seeds"]:
                    for t in tr.get("targets", cfg["targets"]):
                        rows.add((tr["target"], a, s, f"{tr['method']}_{kind}_transfer", fmt_target(t), tr["source"]))
    return rows


@pytest.fixture
def study(ci_study):
    """The session's finished config/test.yaml study: (workdir, seconds)."""
    return ci_study


def _summary(workdir: Path) -> list[dict]:
    with (workdir / STUDY / "summary.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _key(row: dict) -> tuple:
    return (
        row["dataset"],
        row["arch"],
        int(row["seed"]),
        row["method"],
        fmt_target(row["target"]),
        row["source"] or None,
    )


def _metrics_files(workdir: Path, stage: str) -> list[Path]:
    files = sorted(f for f in (workdir / "results").rglob("metrics.json") if "mlflow" not in f.parts)  # not artifacts
    return [f for f in files if json.loads(f.read_text())["stage"] == stage]


# ----------------------------------------------------------------------------- results
def test_summary_has_one_row_per_run(study):
    workdir, _ = study
    rows = _summary(workdir)
    keys = [_key(r) for r in rows]
    assert len(keys) == len(set(keys)), f"duplicate rows: {keys}"
    assert set(keys) == expected_runs(CFG)
    methods = {r["method"] for r in rows}
    assert methods == {"dense", *CFG["methods"], "pass_structure_transfer", "pass_hypernet_transfer"}
    # the transfer tasks' dense models are trained (the transfer runs need them) but are no rows
    assert not {r["dataset"] for r in rows if r["method"] == "dense"} - set(CFG["datasets"])
    assert list((workdir / "results" / "_dense" / "fashion_mnist_a" / "resnet20" / "seed0").glob("*/model.pt"))


def test_pruned_runs_meet_their_macs_target(study):
    workdir, _ = study
    pruned = [r for r in _summary(workdir) if r["method"] != "dense"]
    assert pruned
    for r in pruned:
        target, ratio = float(r["target"]), float(r["macs_ratio"])
        assert 0.99 * target <= ratio <= target + 1e-9, f"{_key(r)}: macs_ratio {ratio:.4f} vs target {target}"
        # the ratio is the pruned over the dense model's MACs, as recorded in the same row
        assert float(r["macs"]) / float(r["dense_macs"]) == pytest.approx(ratio, rel=1e-9)


def test_report_files(study):
    workdir, _ = study
    reports = workdir / STUDY / "reports"
    main = (reports / "tables" / "main.md").read_text()
    for m in ("dense", *CFG["methods"]):
        assert re.search(rf"\|\s*{m}\s*\|", main), f"{m} missing from main.md"
    for name in ("README.md", "tables/main.tex", "tables/main.csv"):
        assert (reports / name).stat().st_size > 0, name
    readme = (reports / "README.md").read_text()
    assert "pass_structure_transfer" in readme and "pass_hypernet_transfer" in readme
    for fig in FIGURES:
        png = reports / "figures" / f"{fig}.png"
        assert png.exists(), png
        assert png.read_bytes()[:8] == PNG_MAGIC, png


def test_snakemake_html_report_embeds_captioned_results(study):
    """`snakemake --report` builds the self-contained HTML report from the finished study."""
    workdir, _ = study
    out = workdir / "report.html"
    proc = run_snakemake(workdir, "--report", str(out))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    html = out.read_text(errors="replace")
    assert "summary.csv" in html and "acc_vs_macs.png" in html
    assert "against the MACs that remain" in html  # a caption from workflow/report/acc_vs_macs.rst


def test_mlflow_has_one_run_per_job(study):
    from mlflow.tracking import MlflowClient

    workdir, _ = study
    client = MlflowClient(f"sqlite:///{(workdir / 'results' / 'mlflow.db').resolve()}")
    name = f"{CFG['tracking']['experiment']}/{CFG['study']}"  # one experiment per study
    exp = client.get_experiment_by_name(name)
    assert exp is not None, f"no experiment {name!r}"
    runs = client.search_runs([exp.experiment_id], max_results=10_000)
    state = json.loads((workdir / STUDY / "mlflow_study.json").read_text())
    parent = client.get_run(state["parent_run_id"])
    assert parent.data.tags.get("passprune.study") == CFG["study"]
    jobs = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert all(r.info.status == "FINISHED" for r in jobs), [(r.info.run_name, r.info.status) for r in jobs]
    assert {r.data.tags.get("mlflow.parentRunId") for r in jobs} == {parent.info.run_id}

    def stage(s):
        return sorted(r.info.run_name for r in jobs if r.data.tags.get("stage") == s)

    finetune = _metrics_files(workdir, "finetune")  # fine-tuning and both transfer kinds
    n = len(CFG["methods"]) + 2  # every method, plus the two transfer kinds (hypernet: its own search on the target)
    assert len(stage("finetune")) == len(set(stage("finetune"))) == len(finetune) == n
    assert len(stage("pretrain")) == len(_metrics_files(workdir, "pretrain")) == 3
    assert len(stage("search")) == len(list((workdir / "results").rglob("search/search.json"))) == n
    assert len(jobs) == 3 + n + n  # every job but aggregate and report
    # the store holds what the files hold: every run, parameter, metric point and artifact
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "passprune.cli", "track-verify", STUDY],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    labels = {r.data.tags.get("method") for r in jobs if r.data.tags.get("stage") == "finetune"}
    assert {"pass_structure_transfer", "pass_hypernet_transfer"} <= labels


def test_pruned_models_load_and_reproduce_their_accuracy(study, monkeypatch):
    import torch

    from passprune.checkpoint import load_pruned
    from passprune.engine import evaluate
    from passprune.settings import DataSettings
    from passprune.stages.common import load_data

    workdir, _ = study
    monkeypatch.chdir(workdir)  # settings name the data root relative to the workdir
    files = _metrics_files(workdir, "finetune")
    assert len(files) == len(CFG["methods"]) + 2
    for f in files:
        m = json.loads(f.read_text())
        model, ck = load_pruned(f.parent / "model.pt")
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(ck["input_shape"]))
        data = load_data(DataSettings(**m["settings"]["data"]), m["dataset"], m["seed"])
        assert out.shape == (1, data.num_classes)
        assert sum(p.numel() for p in model.parameters()) == m["params"], f
        res = evaluate(model, data.test, torch.device("cpu"), 512)
        assert res["n"] == CFG["data"]["test_subset"]
        assert res["top1"] == pytest.approx(m["top1"], abs=0.21), f"{f}: {res['top1']} vs recorded {m['top1']}"


# ----------------------------------------------------------------------------- bookkeeping
def test_second_run_has_nothing_to_do(study):
    workdir, _ = study
    proc = run_snakemake(workdir, "--cores", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Nothing to be done" in out, out[-3000:]


def test_forced_rerun_of_one_finetune_job(study):
    """A deleted metrics.json is an intermediate file to Snakemake: while summary.csv and the report are newer
    than every existing input, a plain `snakemake` has nothing to do. Asking for the file (-R/--forcerun)
    redoes exactly that job, then aggregate and report; nothing else."""
    workdir, _ = study
    target = f"{STUDY}/fashion_mnist/resnet20/seed0/l1/macs{fmt_target(CFG['targets'][0])}/metrics.json"
    path = workdir / target
    before = {f: f.stat().st_mtime_ns for f in (workdir / "results").rglob("*") if f.is_file() and f != path}
    old = json.loads(path.read_text())
    path.unlink()

    proc = run_snakemake(workdir, "-n", "--cores", "2", "-R", target)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert job_counts(out) == {"finetune": 1, "aggregate": 1, "report": 1, "all": 1}, out[-3000:]
    assert re.search(r"output: [^\n]*" + re.escape(target), out), out[-3000:]

    proc = run_snakemake(workdir, "--cores", "2", "-R", target)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:] + job_logs(workdir)
    new = json.loads(path.read_text())
    assert (new["method"], new["target"], new["top1"]) == (old["method"], old["target"], old["top1"])
    changed = {f.relative_to(workdir).as_posix() for f, t in before.items() if f.exists() and f.stat().st_mtime_ns != t}
    run_dir = Path(target).parent.as_posix()
    allowed = {f"{STUDY}/summary.csv", "results/mlflow.db", f"{STUDY}/logs/aggregate.log", f"{STUDY}/logs/report.log"}
    unexpected = {
        c
        for c in changed
        if c not in allowed
        and not c.startswith(run_dir)
        and not c.startswith(f"{STUDY}/reports/")  # the report is rebuilt from the new metrics
        and not c.startswith(f"{STUDY}/logs/finetune/")
        and not c.startswith(f"{STUDY}/benchmarks/finetune/")
    }
    assert not unexpected, f"a rerun of one job touched other jobs' files: {sorted(unexpected)}"
    assert len(_summary(workdir)) == len(expected_runs(CFG))

    proc = run_snakemake(workdir, "-n", "--cores", "2")
    assert "Nothing to be done" in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- studies never overwrite each other
def _digests(root: Path) -> dict[str, str]:
    import hashlib

    return {
        f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


def test_a_second_study_leaves_the_first_unchanged_and_shares_only_identical_dense_models(study, tmp_path):
    """Another config run in the same checkout writes only under its own results/<study>/; a dense model is
    reused across studies exactly when the settings that produced it are identical."""
    workdir, _ = study
    first = _digests(workdir / STUDY)
    dense_before = _digests(workdir / "results" / "_dense")
    other = copy.deepcopy(CFG)
    other.update(study="ci-tiny-other", targets=[0.3], methods={"l1_tp": {}}, transfer=[])
    configfile = tmp_path / "other.yaml"
    configfile.write_text(yaml.safe_dump(other))

    proc = run_snakemake(workdir, "--cores", "2", "--configfile", str(configfile))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:] + job_logs(workdir)
    assert "pretrain" not in job_counts(out) and "rule pretrain" not in out, "identical settings: dense reused"
    assert _digests(workdir / STUDY) == first, "the second study changed files of the first"
    assert _digests(workdir / "results" / "_dense") == dense_before
    rows = list(csv.DictReader((workdir / "results" / "ci-tiny-other" / "summary.csv").open(newline="")))
    assert {(r["method"], fmt_target(r["target"])) for r in rows} == {("dense", "1"), ("l1_tp", "0.3")}

    # different pretraining settings -> a dense model of its own (planned, not shared)
    other["pretrain"]["train"]["lr"] = CFG["pretrain"]["train"]["lr"] / 2
    configfile.write_text(yaml.safe_dump(other))
    proc = run_snakemake(workdir, "-n", "--cores", "2", "--configfile", str(configfile))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert job_counts(out).get("pretrain") == 1, out[-3000:]


def test_the_embedded_default_plans_nothing_inside_this_study(study):
    """The real pair of the issue, planned: after this study, the embedded default (config/config.yaml) would
    write only under its own results/embedded-default/ and its own dense folders, never into this study's."""
    workdir, _ = study
    ours = {p.parent.relative_to(workdir).as_posix() for p in (workdir / "results" / "_dense").rglob("model.pt")}
    proc = run_snakemake(workdir, "-n", "--cores", "2", "--configfile", str(REPO / "config" / "config.yaml"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    outputs = [o.strip() for line in re.findall(r"output: ([^\n]*)", out) for o in line.split(",")]
    assert outputs and all(o.startswith(("results/embedded-default/", "results/_dense/")) for o in outputs), outputs
    assert not [o for o in outputs if o.startswith(f"{STUDY}/")]
    assert ours and not [o for o in outputs if any(o.startswith(d + "/") for d in ours)], "it would overwrite our dense"
