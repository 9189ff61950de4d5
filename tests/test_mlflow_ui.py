"""The MLflow mirror as a user sees it: a real `mlflow server` on loopback over the study's SQLite store, its
REST API, and its web UI rendered by a real headless Chromium.

Chromium comes from Debian (`scripts/test.sh` installs it as root). Without it the browser test is skipped,
unless PASSPRUNE_REQUIRE_BROWSER=1 (CI), where it fails instead.
"""
from __future__ import annotations

import html as html_lib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from passprune.tracking import JobRun, init_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A study of three jobs logged by our tracking code, served by `mlflow server` on 127.0.0.1."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    state = init_study(uri, "passprune-ui", "ui-study", root / "study.json")
    settings = {"enabled": True, "uri": uri, "state_file": str(root / "study.json")}
    for method, top1 in (("pass", 81.5), ("l1", 84.0), ("random", 80.25)):
        with JobRun(settings, f"fashion_mnist/resnet20/seed0/{method}/macs0.3", {"stage": "finetune", "method": method},
                    {"train": {"lr": 0.02}}) as run:
            run.log_metrics({"top1": top1, "macs_ratio": 0.3})
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1", "--default-artifact-root", str(root / "artifacts")],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not come up:\n{(root / 'server.log').read_text()[-3000:]}")
        time.sleep(0.5)
    yield {"base": base, "state": state, "root": root}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_rest_api_lists_the_study_runs(server):
    body = json.dumps({"experiment_ids": [server["state"]["experiment_id"]],
                       "filter": "tags.stage = 'finetune'"}).encode()
    req = urllib.request.Request(f"{server['base']}/api/2.0/mlflow/runs/search", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        runs = json.load(r)["runs"]
    assert len(runs) == 3
    metrics = {next(t["value"] for t in run["data"]["tags"] if t["key"] == "method"):
               {m["key"]: m["value"] for m in run["data"]["metrics"]} for run in runs}
    assert metrics["l1"]["top1"] == 84.0
    parents = {next(t["value"] for t in run["data"]["tags"] if t["key"] == "mlflow.parentRunId") for run in runs}
    assert parents == {server["state"]["parent_run_id"]}


def test_ui_shows_the_runs_in_a_real_browser(server, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("PASSPRUNE_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    exp = server["state"]["experiment_id"]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900", "--virtual-time-budget=20000"]

    def render(url: str) -> str:
        """The page's visible text after its JavaScript ran (tags and React's comment splits removed)."""
        dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=180)
        assert dom.returncode == 0, dom.stderr[-2000:]
        body = re.sub(r"<style.*?</style>|<script.*?</script>", " ", dom.stdout, flags=re.S)
        return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", body)))

    # The experiment's runs page: the study run, with the job runs nested (collapsed) under it.
    url = f"{server['base']}/#/experiments/{exp}/runs"
    text = render(url)
    assert "passprune-ui" in text and "ui-study" in text  # rendered by the UI's JavaScript, not in the static page
    assert "4 matching runs" in text
    # One job's run page: its name, its params and its metrics.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{server['root']}/mlflow.db")
    l1 = client.search_runs([exp], filter_string="tags.method = 'l1'")[0]
    page = render(f"{server['base']}/#/experiments/{exp}/runs/{l1.info.run_id}")
    assert "fashion_mnist/resnet20/seed0/l1/macs0.3" in page
    assert "train.lr" in page and "top1" in page and "84" in page
    shot = tmp_path / "ui.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=180)
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("PASSPRUNE_UI_SCREENSHOT")
    if keep:
        Path(keep).write_bytes(shot.read_bytes())
