"""The lab recipe, for real: Debian's PostgreSQL on loopback behind `mlflow server` started by
scripts/mlflow-server.sh, 16 concurrent jobs logging to it, track-verify finding every run and metric point;
and a server killed in the middle of a study: the jobs still finish, track-sync restores what is missing after
the restart, track-verify reports zero differences and a second sync adds nothing.

The server runs as a lab runs it: MLflow's basic authentication on (the admin password from a chmod-600 file),
the PostgreSQL password in a chmod-600 URI file that the script turns into a private PGPASSFILE (PostgreSQL
checks passwords here: scram-sha-256 on TCP), and jobs logging as a lab member with MLFLOW_TRACKING_USERNAME /
MLFLOW_TRACKING_PASSWORD. Around it: a request without or with a wrong password is refused (401), a reader
cannot delete a run, a refused login loses no result and says what to set, and neither password shows in `ps`.

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
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path
from urllib.parse import quote

import pytest

from passprune.tracking import file_sha256, init_study
from passprune.tracking_sync import job_records, open_study, sync_study, verify_study

#: End-to-end tier: real servers (and, for the UI, a real browser) take minutes on 2 cores.
pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
JOBS = Path(__file__).with_name("mlflow_jobs.py")
#: Throwaway secrets of the test's own cluster and server. The database password has a colon and a percent sign,
#: which the PostgreSQL password file and the URI each escape their own way.
PG_PASSWORD = "pg:db-pass%word-7"
ADMIN = ("admin", "admin-pass-0123")
ALICE = ("alice", "alice-pass-4567")  # a lab member who runs studies
BOB = ("bob", "bob-pass-89ab")  # a lab member who only reads alice's study (the server's default: READ)
#: What jobs and clients must not inherit from the environment running the tests.
CRED_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_PASSWORD_FILE")


def _secret_file(path: Path, text: str) -> Path:
    """A file only its owner can read (chmod 600), as the docs ask for every secret."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        fh.write(text + "\n")
    return path


def _as(monkeypatch, user: tuple[str, str]) -> None:
    """This process talks to the server as ``user`` (MLflow reads the two variables on every request)."""
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD_FILE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None)
    return Path(found).resolve().parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL cluster on 127.0.0.1 (passwords checked on TCP, trusted on its own socket; fsync off),
    database `mlflow`; yields the URI with the password, as a lab writes it into its URI file."""
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

    pwfile = root / "pgpw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if as_user:
        shutil.chown(pwfile, "postgres", "postgres")
    pg(
        str(bindir / "initdb"),
        "-D",
        str(data),
        "-U",
        "mlflow",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        f"--pwfile={pwfile}",
        "-E",
        "UTF8",
        "--no-sync",
    )
    pwfile.unlink()
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
        pg(str(bindir / "createdb"), "-h", str(root), "-p", str(port), "-U", "mlflow", "mlflow")  # its socket
        yield f"postgresql://mlflow:{quote(PG_PASSWORD, safe='')}@127.0.0.1:{port}/mlflow"
    finally:
        pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)


class Server:
    """`bash scripts/mlflow-server.sh` on a free loopback port, secrets in chmod-600 files; kill() and start() again."""

    def __init__(self, backend: str, root: Path) -> None:
        self.root, self.dest, self.log = root, root / "artifacts", root / "server.log"
        self.private = root / "private"  # PASSPRUNE_MLFLOW_DIR: the script makes it (chmod 700)
        self.uri_file = _secret_file(root / "secrets" / "store-uri", backend)
        self.admin_file = _secret_file(root / "secrets" / "admin-password", ADMIN[1])
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CRED_VARS and not k.startswith("MLFLOW_AUTH_")}
        env.pop("MLFLOW_BACKEND_STORE_URI", None)
        return {
            **env,
            "MLFLOW_BACKEND_STORE_URI_FILE": str(self.uri_file),
            "MLFLOW_AUTH_ADMIN_PASSWORD_FILE": str(self.admin_file),
            "PASSPRUNE_MLFLOW_DIR": str(self.private),
            "MLFLOW_ARTIFACTS_DESTINATION": str(self.dest),
            "PORT": str(self.port),
            "WORKERS": "1",
            "PASSPRUNE_VENV": str(Path(sys.executable).parent.parent),
        }

    def start(self) -> None:
        with open(self.log, "a") as fh:
            self.proc = subprocess.Popen(
                ["bash", str(REPO / "scripts" / "mlflow-server.sh")],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=self.env(),
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

    def pids(self) -> list[int]:
        """The server's processes: everything in its session (the script's exec, uvicorn, its workers)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.proc.pid:  # field 6 of /proc/PID/stat: the session id
                found.append(int(stat.parent.name))
        return found

    def kill(self) -> None:
        """SIGKILL the whole server (uvicorn and its workers): a crash, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture(scope="module")
def server(postgres, tmp_path_factory):
    srv = Server(postgres, tmp_path_factory.mktemp("server"))
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def lab(server):
    """The admin adds two lab members through MLflow's own API (docs/mlflow.md): alice and bob."""
    from mlflow.server import get_app_client

    with pytest.MonkeyPatch.context() as mp:
        _as(mp, ADMIN)
        admin = get_app_client("basic-auth", tracking_uri=server.uri)
        for user, password in (ALICE, BOB):
            admin.create_user(user, password)
    return admin


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


def _cli(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``passprune ARGS`` in ``workdir``, with this process's environment updated by ``env`` (None: removed)."""
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "passprune.cli", *args],
        cwd=workdir,
        env={k: v for k, v in full.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _verify_cli(workdir: Path, study: str, uri: str) -> subprocess.CompletedProcess:
    return _cli(workdir, "track-verify", f"results/{study}", "--uri", uri)


def test_16_concurrent_jobs_against_postgres_behind_the_server(server, lab, tmp_path, monkeypatch):
    """Jobs with a lab member's credentials (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD) log everything."""
    _as(monkeypatch, ALICE)
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
    # artifacts went through the server into its destination, under the experiment's id (MLflow's layout, which
    # its authentication checks each upload against)
    exp_id = json.loads((tmp_path / "results" / "pg16" / "mlflow_study.json").read_text())["experiment_id"]
    arts = list((server.dest / exp_id).rglob("metrics.json"))
    assert len(arts) == 16, arts


def test_server_killed_mid_study_then_sync_restores_everything(server, lab, tmp_path, monkeypatch):
    _as(monkeypatch, ALICE)
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


def _get(url: str, user: tuple[str, str] | None = None) -> int:
    """The HTTP status of a GET, with basic authentication as ``user``."""
    req = urllib.request.Request(url)
    if user is not None:
        req.add_header("Authorization", "Basic " + b64encode(f"{user[0]}:{user[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_without_or_with_a_wrong_password_the_server_refuses(server, lab):
    api = f"{server.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(api) == 401
    assert _get(api, (ALICE[0], "wrong-pass-0000")) == 401
    assert _get(api, ("mallory", ALICE[1])) == 401
    assert _get(f"{server.uri}/", None) == 401  # the UI too: the browser asks for the login
    assert _get(api, ALICE) == 200 and _get(api, ADMIN) == 200
    assert _get(f"{server.uri}/health") == 200  # what a load balancer or this test's start-up polls


def test_a_reader_cannot_delete_a_run_until_granted(server, lab, monkeypatch):
    """MLflow's model: everyone reads every study (default READ), the creator manages it, the admin grants more."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri)
    _as(monkeypatch, ALICE)
    exp = client.create_experiment("passprune-test/alice-only")
    run = client.create_run(exp, run_name="job")
    client.log_metric(run.info.run_id, "top1", 80.0)
    _as(monkeypatch, BOB)
    assert client.get_run(run.info.run_id).data.metrics == {"top1": 80.0}  # bob reads it
    for write in (
        lambda: client.delete_run(run.info.run_id),
        lambda: client.log_metric(run.info.run_id, "top1", 1.0, step=1),
        lambda: client.delete_experiment(exp),
    ):
        with pytest.raises(MlflowException) as refused:
            write()
        assert refused.value.get_http_status_code() == 403
    # the admin gives bob EDIT on this one study (docs/mlflow.md): he may log, still not delete
    _as(monkeypatch, ADMIN)
    lab.grant_user_permission(BOB[0], "experiment", exp, "EDIT")
    _as(monkeypatch, BOB)
    client.log_metric(run.info.run_id, "note", 1.0)
    with pytest.raises(MlflowException) as refused:
        client.delete_run(run.info.run_id)
    assert refused.value.get_http_status_code() == 403
    _as(monkeypatch, ALICE)
    kept = client.get_run(run.info.run_id)
    assert kept.info.lifecycle_stage == "active" and kept.data.metrics == {"top1": 80.0, "note": 1.0}


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_refused_login_loses_nothing_and_says_what_to_set(server, lab, tmp_path, monkeypatch):
    """Jobs with a wrong password: one line naming the variables, files written, exit 0. track-sync with a
    wrong password or as a reader: one line, exit 1, files untouched. Then track-sync with the password in a
    chmod-600 file (MLFLOW_TRACKING_PASSWORD_FILE) logs every job and track-verify finds no difference."""
    _as(monkeypatch, ALICE)
    env = _study(tmp_path, "refused", server.uri)
    wrong = {**env, "MLFLOW_TRACKING_PASSWORD": "wrong-pass-0000"}
    proc = _jobs(tmp_path, "refused", wrong, n=2, epochs=3, sleep=0.0)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "2 of 2 jobs finished" in out, out[-3000:]
    study = tmp_path / "results" / "refused"
    for log in (study / "logs").rglob("*.log"):
        lines = [x for x in log.read_text().splitlines() if x.startswith("[tracking]")]
        assert len(lines) == 1, log.read_text()
        assert "did not accept the credentials (401 Unauthorized): set MLFLOW_TRACKING_USERNAME and " in lines[0]
        assert "MLFLOW_TRACKING_PASSWORD" in lines[0] and "results are safe in files" in lines[0]
    assert len(job_records(study)) == 4
    before = _digests(study)
    for who, says in ((wrong, "(401 Unauthorized): set MLFLOW_TRACKING_USERNAME"), (dict(zip(CRED_VARS, BOB)), "403")):
        res = _cli(tmp_path, "track-sync", "results/refused", env=who)
        assert res.returncode == 1, res.stdout + res.stderr
        assert res.stderr.count("\n") == 1 and says in res.stderr and "result files are intact" in res.stderr, (
            res.stderr
        )
        assert _digests(study) == before
    as_file = {
        "MLFLOW_TRACKING_USERNAME": ALICE[0],
        "MLFLOW_TRACKING_PASSWORD": None,
        "MLFLOW_TRACKING_PASSWORD_FILE": str(_secret_file(tmp_path / "secrets" / "mlflow-password", ALICE[1])),
    }
    res = _cli(tmp_path, "track-sync", "results/refused", env=as_file)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "4 jobs with files; 0 runs already complete, 0 completed, 4 created" in res.stdout, res.stdout
    monkeypatch.chdir(tmp_path)
    study_run = open_study(study, uri=server.uri, create=False)
    assert verify_study(study_run, out=open(os.devnull, "w")) == []


def test_no_password_in_the_process_list(server, lab):
    """The database and admin passwords reach the server through private files and its environment (readable by
    its owner only), never through a command line that `ps` shows every user."""
    pids = server.pids()
    cmdlines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in pids}
    assert any("-m uvicorn" in c for c in cmdlines.values()), cmdlines  # the script's exec and its uvicorn
    assert any("--backend-store-uri postgresql+psycopg://mlflow@127.0.0.1:" in c for c in cmdlines.values()), cmdlines
    listed = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True).stdout
    for secret in (PG_PASSWORD, quote(PG_PASSWORD, safe=""), "db-pass", ADMIN[1]):
        assert not any(secret in c for c in cmdlines.values()), (secret, cmdlines)
        assert secret not in listed
    # where the secrets live: the private folder and its files are the owner's alone
    assert server.private.stat().st_mode & 0o777 == 0o700
    for name in ("basic_auth.ini", "pgpass", "flask_secret_key", "basic_auth.db"):
        assert (server.private / name).stat().st_mode & 0o077 == 0, name
    ini = (server.private / "basic_auth.ini").read_text()
    assert "default_permission = READ" in ini and ADMIN[1] not in ini and PG_PASSWORD not in ini
    assert f"PGPASSFILE={server.private / 'pgpass'}".encode() in Path(f"/proc/{server.proc.pid}/environ").read_bytes()
