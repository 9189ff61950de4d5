"""The MLflow mirror as a user sees it: a real `mlflow server` on loopback over the study's SQLite store, its
REST API, and its web UI rendered by a real headless Chromium at the runs-table link scripts/mlflow-ui.sh prints.

Chromium comes from Debian (`scripts/test.sh` installs it as root). Without it the browser test is skipped,
unless PASSPRUNE_REQUIRE_BROWSER=1 (CI), where it fails instead.
"""

from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from passprune.files import atomic_write_json
from passprune.tracking import JobRun, init_study

#: End-to-end tier: real servers (and, for the UI, a real browser) take minutes on 2 cores.
pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _finetune_files(results: Path, study: str, method: str, top1: float) -> Path:
    """A fine-tuning job's files as ``passprune finetune`` writes them (metrics.json with its history and
    structure), and its Snakemake log."""
    out = results / study / "fashion_mnist" / "resnet20" / "seed0" / method / "macs0.3"
    groups = {"conv1": 8, "layer1.0": 8, "layer2.0": 16, "layer3.0": 32}
    atomic_write_json(
        out / "metrics.json",
        {
            "stage": "finetune",
            "dataset": "fashion_mnist",
            "arch": "resnet20",
            "seed": 0,
            "method": method,
            "family": "baseline",
            "target": 0.3,
            "source": None,
            "top1": top1,
            "macs_ratio": 0.3,
            "history": [{"epoch": e, "val_top1": top1 - 3 + e, "train_loss": 1.0 / e} for e in (1, 2, 3)],
            "kept_channels": {g: max(1, n // 3) for g, n in groups.items()},
            "group_sizes": groups,
            "group_order": list(groups),
            "settings": {"train": {"lr": 0.02}},
        },
    )
    log = results / study / "logs" / "finetune" / "fashion_mnist" / "resnet20" / "seed0" / method / "macs0.3.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"finetune {method}@0.3 epoch 3/3 val_top1 {top1:.2f}\n")
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A study of three jobs logged by our tracking code (JobRun + log_outputs, as the stages do), served by
    scripts/mlflow-ui.sh on 127.0.0.1 with its artifacts from results/<study>/mlflow/."""
    root = tmp_path_factory.mktemp("mlflow")
    results = root / "results"
    uri = f"sqlite:///{results}/mlflow.db"
    state_file = results / "ui-study" / "mlflow_study.json"
    state = init_study(uri, "passprune-ui", "ui-study", state_file)
    settings = {"enabled": True, "live": True, "uri": uri, "state_file": str(state_file)}
    for method, top1 in (("pass", 81.5), ("l1", 84.0), ("random", 80.25)):
        out = _finetune_files(results, "ui-study", method, top1)
        with JobRun(
            settings,
            f"fashion_mnist/resnet20/seed0/{method}/macs0.3",
            {
                "stage": "finetune",
                "dataset": "fashion_mnist",
                "arch": "resnet20",
                "seed": 0,
                "method": method,
                "target": 0.3,
                "family": "baseline",
            },
            {"train": {"lr": 0.02}},
        ) as run:
            for e in (1, 2, 3):
                run.log_metrics({"val_top1": top1 - 3 + e, "train_loss": 1.0 / e, "epoch": e}, e)
            run.log_outputs(out)
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PORT": str(port),
        "PASSPRUNE_VENV": str(Path(sys.executable).parent.parent),
    }
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        ["bash", str(Path(__file__).resolve().parent.parent / "scripts" / "mlflow-ui.sh")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180  # as the server tests: the start-up, and the links printed before it
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"mlflow server did not come up:\n{(root / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield {"base": base, "state": state, "root": root, "uri": uri, "results": results}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def test_rest_api_lists_the_study_runs(server):
    body = json.dumps(
        {"experiment_ids": [server["state"]["experiment_id"]], "filter": "tags.stage = 'finetune'"}
    ).encode()
    req = urllib.request.Request(
        f"{server['base']}/api/2.0/mlflow/runs/search", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        runs = json.load(r)["runs"]
    assert len(runs) == 3
    metrics = {
        next(t["value"] for t in run["data"]["tags"] if t["key"] == "method"): {
            m["key"]: m["value"] for m in run["data"]["metrics"]
        }
        for run in runs
    }
    assert metrics["l1"]["top1"] == 84.0
    parents = {next(t["value"] for t in run["data"]["tags"] if t["key"] == "mlflow.parentRunId") for run in runs}
    assert parents == {server["state"]["parent_run_id"]}


def test_rest_api_serves_a_job_runs_metrics_and_artifacts(server):
    """Through the server, as the UI reads them: the epoch curve and the files, from the relative artifact root."""
    from mlflow.tracking import MlflowClient

    exp = server["state"]["experiment_id"]
    run = MlflowClient(server["uri"]).search_runs([exp], filter_string="tags.method = 'pass'")[0]
    rid = run.info.run_id
    with urllib.request.urlopen(
        f"{server['base']}/api/2.0/mlflow/metrics/get-history?run_id={rid}&metric_key=val_top1", timeout=30
    ) as r:
        assert sorted((m["step"], m["value"]) for m in json.load(r)["metrics"]) == [(1, 79.5), (2, 80.5), (3, 81.5)]
    with urllib.request.urlopen(f"{server['base']}/api/2.0/mlflow/artifacts/list?run_id={rid}", timeout=30) as r:
        assert {f["path"] for f in json.load(r)["files"]} == {"metrics.json", "kept_ratio.png", "job.log"}
    with urllib.request.urlopen(f"{server['base']}/get-artifact?path=metrics.json&run_uuid={rid}", timeout=30) as r:
        served = r.read()
    local = (
        server["results"] / "ui-study" / "fashion_mnist" / "resnet20" / "seed0" / "pass" / "macs0.3" / "metrics.json"
    )
    assert served == local.read_bytes()
    assert (server["results"] / "ui-study" / "mlflow" / rid / "artifacts" / "kept_ratio.png").is_file()


def test_ui_shows_the_runs_in_a_real_browser(server, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("PASSPRUNE_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    exp = server["state"]["experiment_id"]
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,900",
        "--virtual-time-budget=20000",
    ]

    def render(url: str) -> str:
        """The page's visible text after its JavaScript ran (tags and React's comment splits removed)."""
        dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=180)
        assert dom.returncode == 0, dom.stderr[-2000:]
        body = re.sub(r"<style.*?</style>|<script.*?</script>", " ", dom.stdout, flags=re.S)
        return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", body)))

    # The link scripts/mlflow-ui.sh printed for the study: its runs table (MLflow 3 would otherwise open the
    # experiment on its empty GenAI overview), with the study run and the job runs nested (collapsed) under it.
    printed = re.findall(r"^  passprune-ui/ui-study: (\S+)$", (server["root"] / "server.log").read_text(), flags=re.M)
    assert printed == [f"{server['base']}/#/experiments/{exp}/runs"]
    url = printed[0]
    text = render(url)
    assert "passprune-ui" in text and "ui-study" in text  # rendered by the UI's JavaScript, not in the static page
    assert "4 matching runs" in text
    # One job's run page: its name, its params and its metrics.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server["uri"])
    l1 = client.search_runs([exp], filter_string="tags.method = 'l1'")[0]
    page = render(f"{server['base']}/#/experiments/{exp}/runs/{l1.info.run_id}")
    assert "fashion_mnist/resnet20/seed0/l1/macs0.3" in page
    assert "train.lr" in page and "top1" in page and "84" in page and "val_top1" in page
    # ...and its artifacts tab: the files, the kept-ratio plot and the job's log, served from results/<study>/mlflow/
    arts = render(f"{server['base']}/#/experiments/{exp}/runs/{l1.info.run_id}/artifacts")
    for name in ("metrics.json", "kept_ratio.png", "job.log"):
        assert name in arts, arts[-1500:]
    shot = tmp_path / "run.png"
    subprocess.run(
        [
            CHROMIUM,
            *flags,
            f"--screenshot={shot}",
            f"{server['base']}/#/experiments/{exp}/runs/{l1.info.run_id}/artifacts",
        ],
        capture_output=True,
        timeout=180,
    )
    keep = os.environ.get("PASSPRUNE_UI_SCREENSHOT")
    if keep:
        Path(keep).with_name("run-" + Path(keep).name).write_bytes(shot.read_bytes())
    shot = tmp_path / "ui.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=180)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("PASSPRUNE_UI_SCREENSHOT")
    if keep:
        Path(keep).write_bytes(shot.read_bytes())
