"""The lab recipe, for real: Debian's PostgreSQL on loopback behind `mlflow server` started by
scripts/mlflow-server.sh, 16 concurrent jobs logging to it, track-verify finding every run and metric point;
and a server killed in the middle of a study: the jobs still finish, track-sync restores what is missing after
the restart, track-verify reports zero differences and a second sync adds nothing.

PostgreSQL comes from Debian (`scripts/test.sh` installs it as root); the test starts a private cluster in a
temporary folder (initdb / pg_ctl, as the `postgres` user when run as root). Without it the tests are skipped,
unless PASSPRUNE_REQUIRE_POSTGRES=1 (CI), where they fail instead.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from passprune.tracking import init_study
from passprune.tracking_sync import job_records, open_study, sync_study, verify_study

#: End-to-end tier: real servers (and, for the UI, a real browser) take minutes on 2 cores.
pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
JOBS = Path(__file__).with_name("mlflow_jobs.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None)
    return Path(found).resolve().parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off), database `mlflow`."""
    bindir = _pg_bin()
    if bindir is None:
        why = "PostgreSQL is not installed (apt-get install postgresql; scripts/test.sh does it as root)"
        if os.environ.get("PASSPRUNE_REQUIRE_POSTGRES"):
            pytest.fail(why)
        pytest.skip(why)
    root = Path(tempfile.mkdtemp(prefix="passprune-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = root / "data"

    def pg(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            log = (root / "pg.log").read_text() if (root / "pg.log").exists() else ""
            pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}\n{log[-2000:]}")
        return proc

    pg(str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "-E", "UTF8", "--no-sync")
    pg(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "pg.log"),
        "-w",
        "-t",
        "60",
        "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off",
        "start",
    )
    try:
        pg(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", "mlflow")
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


class Server:
    """`bash scripts/mlflow-server.sh` on a free loopback port; kill() and start() again."""

    def __init__(self, backend: str, dest: Path, log: Path) -> None:
        self.backend, self.dest, self.log = backend, dest, log
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "MLFLOW_BACKEND_STORE_URI": self.backend,
            "MLFLOW_ARTIFACTS_DESTINATION": str(self.dest),
            "PORT": str(self.port),
            "WORKERS": "1",
            "PASSPRUNE_VENV": str(Path(sys.executable).parent.parent),
        }
        with open(self.log, "a") as fh:
            self.proc = subprocess.Popen(
                ["bash", str(REPO / "scripts" / "mlflow-server.sh")],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.kill()
                pytest.fail(f"mlflow server did not come up:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL the whole server (uvicorn and its workers): a crash, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    srv = Server(postgres, root / "artifacts", root / "server.log")
    srv.start()
    yield srv
    srv.kill()


def _study(workdir: Path, study: str, uri: str) -> dict:
    """What the workflow's onstart does: the study file, then the store's experiment and study run."""
    config = {
        "study": study,
        "tracking": {"enabled": True, "uri": uri, "experiment": "passprune-test", "log_models": False, "live": True},
    }
    study_dir = workdir / "results" / study
    study_dir.mkdir(parents=True)
    (study_dir / "study.json").write_text(json.dumps({"study": study, "config": config, "dense_dirs": []}))
    init_study(uri, "passprune-test", study, study_dir / "mlflow_study.json")
    return {
        "PASSPRUNE_TRACKING": json.dumps({**config["tracking"], "state_file": f"results/{study}/mlflow_study.json"}),
        "MLFLOW_TRACKING_URI": uri,
    }


def _jobs(workdir: Path, study: str, env: dict, n: int, epochs: int, sleep: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(JOBS), "results", study, "--jobs", str(n), "--epochs", str(epochs), "--sleep", str(sleep)],
        cwd=workdir,
        env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _verify_cli(workdir: Path, study: str, uri: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "passprune.cli", "track-verify", f"results/{study}", "--uri", uri],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_16_concurrent_jobs_against_postgres_behind_the_server(server, tmp_path, monkeypatch):
    env = _study(tmp_path, "pg16", server.uri)
    proc = _jobs(tmp_path, "pg16", env, n=16, epochs=8, sleep=0.0)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "16 of 16 jobs finished" in out
    records = job_records(tmp_path / "results" / "pg16")
    assert len(records) == 32  # a search and a fine-tuning per job
    points = sum(r.n_points for r in records)
    res = _verify_cli(tmp_path, "pg16", server.uri)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert f"32 jobs, {points} metric points" in res.stdout and "; 0 differences" in res.stdout, res.stdout[-2000:]
    # artifacts went through the server into its destination, under the study's folder
    arts = list((server.dest / "pg16" / "mlflow").rglob("metrics.json"))
    assert len(arts) == 16, arts


def test_server_killed_mid_study_then_sync_restores_everything(server, tmp_path, monkeypatch):
    env = _study(tmp_path, "killed", server.uri)
    started = time.time()
    proc = _jobs(tmp_path, "killed", env, n=6, epochs=30, sleep=0.1)
    logs = tmp_path / "results" / "killed" / "logs" / "search"
    deadline = time.time() + 300
    while sum("search step 5 " in p.read_text() for p in logs.rglob("*.log")) < 6:  # all are logging their searches
        assert time.time() < deadline and proc.poll() is None, "the jobs did not start"
        time.sleep(0.2)
    server.kill()
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]  # tracking failures never fail a job
    assert "6 of 6 jobs finished" in out
    assert time.time() - started < 240, "jobs waited too long on a dead server"
    text = "".join(p.read_text() for p in (tmp_path / "results" / "killed" / "logs").rglob("*.log"))
    assert text.count("passprune track-sync` restores the run") >= 6  # each job said so, once per run at most
    server.start()  # same PostgreSQL, same artifact destination
    monkeypatch.chdir(tmp_path)
    study = open_study(tmp_path / "results" / "killed", uri=server.uri, create=False)
    before = verify_study(study, out=open(os.devnull, "w"))
    assert before, "the kill lost nothing: the test did not test anything"
    study = open_study(tmp_path / "results" / "killed", uri=server.uri)
    first = sync_study(study)
    assert first["jobs"] == 12 and first["completed"] + first["created"] > 0
    res = _verify_cli(tmp_path, "killed", server.uri)
    assert res.returncode == 0 and "; 0 differences" in res.stdout, (res.stdout + res.stderr)[-3000:]
    second = sync_study(open_study(tmp_path / "results" / "killed", uri=server.uri))
    assert second["complete"] == 12 and second["created"] == second["completed"] == 0
    assert second["points"] == second["artifacts"] == 0
