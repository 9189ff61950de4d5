"""The warm job start (passprune.jobserver), checked with real processes: a job handed to the server writes the
same bytes as a job started as its own process, its exit status, streams, directory and environment are the
client's, signals reach it, it dies with its client, and without a server the client runs the job itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from passprune import jobserver

JOB = ["--dataset", "fashion_mnist", "--arch", "resnet20", "--seed", "3"]


def _settings(root: Path) -> str:
    return json.dumps(
        {
            "data": {"root": str(root), "val_size": 64, "train_subset": 128, "test_subset": 64},
            "device": "cpu",
            "model": {"width": 0.25},
            "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "max_steps_per_epoch": 3},
            "tracking": {"enabled": False},
        }
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A job server of this test process, ready (its imports done), stopped at the end."""
    log = tmp_path_factory.mktemp("jobserver") / "server.log"
    path = jobserver.start(log, timeout=120)
    assert os.path.exists(path), log.read_text()
    proc = next(p for p in psutil.process_iter(["cmdline"]) if path in (p.info["cmdline"] or []))
    yield path, proc
    jobserver.stop(path)
    proc.wait(timeout=10)  # it notices its socket is gone within a second and exits


def _passprune(args: list[str], server: str | None, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != jobserver.ENV}
    if server:
        env[jobserver.ENV] = server
    return subprocess.Popen([sys.executable, "-m", "passprune.cli", *args], env=env, **kw)


def _run(args: list[str], server: str | None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    proc = _passprune(args, server, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_job_through_the_server_writes_the_same_bytes(server, fmnist_root, tmp_path):
    """Pretraining (an optimiser, so torch._dynamo from the server's preload) in a fresh process and through the
    server: the same model.pt, and metrics.json says which started how."""
    runs = {}
    for name, path in (("process", None), ("warm", server[0])):
        out = tmp_path / name
        proc = _run(["pretrain", *JOB, "--settings", _settings(fmnist_root), "--out", str(out)], path)
        assert proc.returncode == 0, proc.stderr
        runs[name] = out
    assert (runs["process"] / "model.pt").read_bytes() == (runs["warm"] / "model.pt").read_bytes()
    warm = {n: json.loads((d / "metrics.json").read_text())["provenance"]["warm_start"] for n, d in runs.items()}
    assert warm == {"process": False, "warm": True}


def test_exit_status_streams_and_directory_are_the_clients(server, tmp_path):
    """argparse's usage error (status 2) and a bad-input error (status 1, one line) reach the client's stderr;
    a relative --out lands in the client's working directory."""
    usage = _run(["search", "--dataset", "fashion_mnist"], server[0])
    assert usage.returncode == 2 and "the following arguments are required" in usage.stderr
    bad = _run(["pretrain", *JOB, "--settings", '{"no_such_section": 1}', "--out", "rel"], server[0], cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.startswith("passprune pretrain: error:"), bad.stderr
    assert "no_such_section" in bad.stderr


def test_no_server_means_the_client_runs_the_job(tmp_path):
    """A socket nobody listens on (the server not ready yet, or gone): the job runs in the client, as before."""
    usage = _run(["search", "--dataset", "fashion_mnist"], str(tmp_path / "absent.sock"))
    assert usage.returncode == 2 and "the following arguments are required" in usage.stderr


def _blocked_job(server: tuple[str, psutil.Process], tmp_path: Path) -> tuple[subprocess.Popen, psutil.Process]:
    """A job that waits forever inside the server's child: its settings come from a FIFO nobody writes."""
    fifo = tmp_path / "settings.fifo"
    os.mkfifo(fifo)
    client = _passprune(["pretrain", *JOB, "--settings", f"@{fifo}", "--out", str(tmp_path / "o")], server[0])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = server[1].children()
        if children:
            return client, children[0]
        time.sleep(0.05)
    client.kill()
    pytest.fail("the server forked no child for the job")


def test_a_signal_to_the_client_reaches_the_job(server, tmp_path):
    client, child = _blocked_job(server, tmp_path)
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == -signal.SIGTERM  # the job died of it, and so does the client
    child.wait(timeout=10)


def test_the_job_dies_with_its_client(server, tmp_path):
    """SIGKILL cannot be forwarded: the child notices its client's end and kills itself, so no job outlives its
    Snakemake job (a killed workflow must not leave jobs writing its files)."""
    client, child = _blocked_job(server, tmp_path)
    client.kill()
    client.wait(timeout=10)
    child.wait(timeout=10)
    assert not child.is_running()


def test_the_workflow_starts_a_server_only_for_cpu_jobs_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.delenv(jobserver.SWITCH, raising=False)
    no_gpu, gpu = str(tmp_path / "nvidia[0-9]*"), str(tmp_path / "gpu*")
    (tmp_path / "gpu0").touch()
    assert jobserver.wanted("local", "cpu", no_gpu) and jobserver.wanted("local", "auto", no_gpu)
    assert jobserver.wanted(None, "cpu", gpu)  # device: cpu on a GPU machine
    assert not jobserver.wanted("local", "auto", gpu)  # auto picks the GPU there
    assert not jobserver.wanted("local", "cuda", no_gpu)
    assert not jobserver.wanted("slurm", "cpu", no_gpu)  # a cluster job runs on another node
    monkeypatch.setenv(jobserver.SWITCH, "0")
    assert not jobserver.wanted("local", "cpu", no_gpu)
