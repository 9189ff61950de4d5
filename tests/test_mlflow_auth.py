"""Credentials kept out of sight, checked without a server: scripts/mlflow-server.sh refuses to start without an
admin password, with one readable by others, with --no-auth on a non-loopback host and with a store URI on its
command line; the client side refuses a password in a tracking URI or in a file others can read, and turns a
401/403 into one line naming what to set; `passprune track-urls` prints each study's runs-table link.

The real server with authentication (401s, a reader refused, passwords absent from `ps`) is tested in
tests/test_mlflow_server.py; the printed link opened in a real browser in tests/test_mlflow_ui.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from passprune.tracking import AuthError, auth_problem, check_uri, init_study, load_credentials

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "mlflow-server.sh"


def _private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def _server_script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The server script with a store and artifact folder set, and no admin password unless ``env`` gives one."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_AUTH_", "MLFLOW_BACKEND_", "HOST"))}
    base.update(
        MLFLOW_BACKEND_STORE_URI_FILE=str(_private(tmp_path / "uri", "postgresql://mlflow:pw@127.0.0.1:1/mlflow")),
        MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"),
        PASSPRUNE_MLFLOW_DIR=str(tmp_path / "private"),
        PASSPRUNE_VENV=str(Path(sys.executable).parent.parent),
        PORT="1",
    )
    return subprocess.run(["bash", str(SCRIPT), *args], env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_server_script_without_an_admin_password_exits_and_says_what_to_set(tmp_path):
    res = _server_script(tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "no admin password: set MLFLOW_AUTH_ADMIN_PASSWORD_FILE=" in res.stderr
    assert "or MLFLOW_AUTH_ADMIN_PASSWORD" in res.stderr and "--no-auth" in res.stderr
    assert not (tmp_path / "private").exists()  # refused before writing anything
    assert not (tmp_path / "artifacts").exists()


def test_server_script_refuses_an_admin_password_others_can_read_or_too_short(tmp_path):
    shared = _private(tmp_path / "admin-password", "admin-pass-0123", 0o644)
    res = _server_script(tmp_path, MLFLOW_AUTH_ADMIN_PASSWORD_FILE=str(shared))
    assert res.returncode == 2
    assert f"MLFLOW_AUTH_ADMIN_PASSWORD_FILE={shared} is readable by others (mode 644): chmod go-rwx" in res.stderr
    res = _server_script(tmp_path, MLFLOW_AUTH_ADMIN_PASSWORD="short")
    assert res.returncode == 2 and "shorter than 12 characters" in res.stderr
    res = _server_script(tmp_path, MLFLOW_AUTH_ADMIN_PASSWORD_FILE=str(tmp_path / "missing"))
    assert res.returncode == 2 and "no such file" in res.stderr


def test_server_script_refuses_no_auth_off_loopback_and_a_store_uri_argument(tmp_path):
    for args, env in ((["--no-auth"], {"HOST": "0.0.0.0"}), (["--no-auth", "--host", "10.1.2.3"], {})):
        res = _server_script(tmp_path, *args, **env)
        assert res.returncode == 2 and "--no-auth serves every study" in res.stderr, res.stderr
        assert "only with a loopback HOST" in res.stderr
    res = _server_script(tmp_path, "--backend-store-uri", "postgresql://u:pw@h/db", MLFLOW_AUTH_ADMIN_PASSWORD="x" * 12)
    assert res.returncode == 2 and "set MLFLOW_BACKEND_STORE_URI_FILE" in res.stderr


def test_server_script_refuses_a_private_folder_others_can_read(tmp_path):
    (tmp_path / "private").mkdir(mode=0o755)
    (tmp_path / "private").chmod(0o755)
    res = _server_script(tmp_path, MLFLOW_AUTH_ADMIN_PASSWORD="admin-pass-0123")
    assert res.returncode == 2 and "PASSPRUNE_MLFLOW_DIR=" in res.stderr and "chmod go-rwx" in res.stderr


def test_a_password_in_a_tracking_uri_is_refused_and_not_repeated():
    with pytest.raises(AuthError) as err:
        check_uri("http://alice:s3cret-pw@headnode:5000")
    assert "http://alice:***@headnode:5000" in str(err.value) and "s3cret" not in str(err.value)
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in str(err.value)
    with pytest.raises(AuthError, match="~/.pgpass"):
        check_uri("postgresql://mlflow:s3cret@dbhost/mlflow")
    for fine in ("http://headnode:5000", "sqlite:////abs/results/mlflow.db", "postgresql://mlflow@dbhost/mlflow"):
        check_uri(fine)


def test_password_file_must_be_private_and_fills_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "x")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")  # recorded, so the variable load_credentials sets is undone
    pw = _private(tmp_path / "pw", "alice-pass-4567", 0o640)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD_FILE", str(pw))
    with pytest.raises(AuthError, match=r"readable only by you \(mode 640\): chmod 600"):
        load_credentials()
    assert "MLFLOW_TRACKING_PASSWORD" not in os.environ
    pw.chmod(0o600)
    load_credentials()
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "alice-pass-4567"
    # MLflow's own credentials file (~/.mlflow/credentials) is held to the same rule
    (tmp_path / ".mlflow").mkdir()
    _private(tmp_path / ".mlflow" / "credentials", "[mlflow]\nmlflow_tracking_password = x", 0o644)
    with pytest.raises(AuthError, match="MLflow's credentials file"):
        load_credentials()


def test_refusals_become_one_line_naming_the_variables(monkeypatch):
    import requests
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import PERMISSION_DENIED, UNAUTHENTICATED

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    said = auth_problem("http://h:5000", MlflowException("401 != 200", error_code=UNAUTHENTICATED))
    assert said.startswith("the MLflow server http://h:5000 did not accept the credentials (401 Unauthorized)")
    assert "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_PASSWORD_FILE" in said
    said = auth_problem("http://h:5000", MlflowException("403 != 200", error_code=PERMISSION_DENIED))
    assert "refused user 'bob' (403 Forbidden" in said and "EDIT" in said
    upload = requests.Response()  # an artifact upload through the server fails as requests' HTTPError
    upload.status_code = 401
    assert "(401 Unauthorized)" in auth_problem("http://h:5000", requests.HTTPError("401", response=upload))
    assert auth_problem("http://h:5000", ConnectionError("refused")) is None
    assert "\n" not in said


def test_track_urls_prints_each_studys_runs_table(tmp_path, monkeypatch, capsys):
    from passprune.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    missing = f"sqlite:///{tmp_path}/none/mlflow.db"
    main(["track-urls", "--uri", missing])
    assert "no MLflow store at" in capsys.readouterr().err and not (tmp_path / "none").exists()
    uri = "sqlite:///results/mlflow.db"  # the default store, relative to the working directory like run.sh's
    ids = {}
    for study in ("study-a", "study-b"):
        state = init_study(uri, "passprune", study, Path("results", study, "mlflow_study.json"), config={})
        ids[study] = state["experiment_id"]
    capsys.readouterr()
    main(["track-urls", "--uri", uri, "--base", "http://127.0.0.1:5123/"])
    assert capsys.readouterr().out.splitlines() == [
        f"  passprune/{s}: http://127.0.0.1:5123/#/experiments/{ids[s]}/runs" for s in ("study-a", "study-b")
    ]
    # run.sh's form: one study folder, its store from the study's state file, the default UI address
    main(["track-urls", "results/study-b"])
    assert (
        capsys.readouterr().out == f"  passprune/study-b: http://127.0.0.1:5000/#/experiments/{ids['study-b']}/runs\n"
    )
    # ... answered from the state file, which recorded the experiment of this very store: no client is opened
    import passprune.tracking

    def no_client(uri):
        raise AssertionError("track-urls opened the store although the state file names the experiment")

    monkeypatch.setattr(passprune.tracking, "client_for", no_client)
    main(["track-urls", "results/study-b"])
    assert f"/#/experiments/{ids['study-b']}/runs" in capsys.readouterr().out


def test_ui_script_without_logins_stays_on_loopback(tmp_path):
    """scripts/mlflow-ui.sh has no authentication: a --host others could reach is refused, pointing to the
    lab server."""
    for args in (["--host", "0.0.0.0"], ["--port", "1", "--host=10.1.2.3"]):
        res = subprocess.run(
            ["bash", str(REPO / "scripts" / "mlflow-ui.sh"), *args], capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 2 and "no logins here" in res.stderr and "scripts/mlflow-server.sh" in res.stderr
