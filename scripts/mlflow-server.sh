#!/usr/bin/env bash
# A shared MLflow tracking server for a lab: PostgreSQL backend (psycopg 3), artifacts proxied to a shared folder,
# and MLflow's own basic authentication (`--app-name basic-auth`) on by default, so every job (a SLURM node, a
# laptop) needs MLFLOW_TRACKING_URI=http://HOST:PORT plus its user's MLFLOW_TRACKING_USERNAME/PASSWORD.
# See docs/mlflow.md, "A server for the lab". Settings (environment):
#   MLFLOW_BACKEND_STORE_URI_FILE  a file (chmod 600) holding postgresql://USER:PASSWORD@HOST:PORT/DB, or
#   MLFLOW_BACKEND_STORE_URI       the URI itself (environment only). Either way the password never reaches a
#                                  command line: it goes to a private PostgreSQL password file (PGPASSFILE)
#   MLFLOW_ARTIFACTS_DESTINATION   a folder every user can reach, e.g. the results/ folder on shared storage
#                                  (studies' artifacts land in <it>/<study>/mlflow/<run_id>/artifacts)  (required)
#   MLFLOW_AUTH_ADMIN_PASSWORD_FILE  a file (chmod 600) holding the admin's password (12+ characters), or
#   MLFLOW_AUTH_ADMIN_PASSWORD       the password itself (environment only); required unless --no-auth
#   MLFLOW_AUTH_ADMIN_USERNAME (admin)   MLFLOW_AUTH_DATABASE_URI (sqlite:///<private folder>/basic_auth.db)
#   MLFLOW_AUTH_CACHE_TTL_SECONDS (60)   how long a worker trusts a checked password (each check costs ~0.1 s)
#   PASSPRUNE_MLFLOW_DIR (~/.passprune/mlflow-server)  private folder (chmod 700): the auth config and database,
#                                  the PostgreSQL password file, the session secret
#   HOST (127.0.0.1)  PORT (5000)  WORKERS (4)
# Options: --no-auth (no authentication; refused unless the host is loopback). Extra arguments go to
# `mlflow server`, e.g. --allowed-hosts "headnode,headnode:5000"; `--host X` is the same as HOST=X.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PASSPRUNE_VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
die() { echo "mlflow-server.sh: $*" >&2; exit 2; }

auth=1 host="${HOST:-127.0.0.1}" args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-auth) auth=0 ;;
    --host|-h) [ $# -ge 2 ] || die "$1 needs a value"; host="$2"; shift ;;
    --host=*) host="${1#--host=}" ;;
    --app-name|--app-name=*) die "the script chooses the app (basic-auth); drop $1, or pass --no-auth for none" ;;
    --backend-store-uri|--backend-store-uri=*)
      die "a store URI on the command line shows its password to every user (ps): set MLFLOW_BACKEND_STORE_URI_FILE" ;;
    *) args+=("$1") ;;
  esac
  shift
done
if [ "$auth" = 0 ]; then
  case "$host" in
    127.*|localhost|::1|'[::1]') ;;
    *) die "--no-auth serves every study, writable, to anyone who reaches $host: only with a loopback HOST" \
         "(127.0.0.1); for the lab, set MLFLOW_AUTH_ADMIN_PASSWORD_FILE instead (docs/mlflow.md)" ;;
  esac
fi

# owner_only VAR PATH: the file (or folder) exists, is ours and nobody else can read it
owner_only() {
  [ -e "$2" ] || die "$1=$2: no such file"
  local mode owner
  mode=$(stat -L -c %a "$2") owner=$(stat -L -c %u "$2")
  [ "$owner" = "$(id -u)" ] || die "$1=$2 belongs to another user: it must be yours"
  (( (8#$mode & 8#077) == 0 )) || die "$1=$2 is readable by others (mode $mode): chmod go-rwx $2"
}
secret_from() {  # secret_from VAR_FILE VAR: the first line of $VAR_FILE (checked), else $VAR, else empty
  local file="${!1:-}"
  if [ -n "$file" ]; then
    owner_only "$1" "$file"
    head -n 1 "$file" | tr -d '\r\n'
  else
    printf '%s' "${!2:-}"
  fi
}

if [ "$auth" = 1 ]; then  # before anything is written: no admin password, no server
  pw=$(secret_from MLFLOW_AUTH_ADMIN_PASSWORD_FILE MLFLOW_AUTH_ADMIN_PASSWORD)
  [ -n "$pw" ] || die "no admin password: set MLFLOW_AUTH_ADMIN_PASSWORD_FILE=/path/to/file (chmod 600, one line," \
    "12+ characters) or MLFLOW_AUTH_ADMIN_PASSWORD, or pass --no-auth for a loopback-only server (docs/mlflow.md)"
  [ "${#pw}" -ge 12 ] || die "the admin password is shorter than 12 characters (MLflow's minimum)"
fi

umask 077  # everything written below is private
priv="${PASSPRUNE_MLFLOW_DIR:-$HOME/.passprune/mlflow-server}"
mkdir -p "$priv"
owner_only PASSPRUNE_MLFLOW_DIR "$priv"

uri=$(secret_from MLFLOW_BACKEND_STORE_URI_FILE MLFLOW_BACKEND_STORE_URI)
dest="${MLFLOW_ARTIFACTS_DESTINATION:-}"
if [ -z "$uri" ] || [ -z "$dest" ]; then
  die "set MLFLOW_BACKEND_STORE_URI_FILE=/path/to/uri (chmod 600; postgresql://USER:PASSWORD@HOST:PORT/DB) and" \
      "MLFLOW_ARTIFACTS_DESTINATION=/shared/folder (docs/mlflow.md)"
fi
unset MLFLOW_BACKEND_STORE_URI  # the URI with its password stays out of the server's environment too
case "$uri" in  # SQLAlchemy 2.0 maps plain postgresql:// to psycopg2; this project ships psycopg 3
  postgresql://*|postgres://*) uri="postgresql+psycopg://${uri#*://}" ;;
esac
if [[ "$uri" == postgresql+psycopg://* ]] && ! "$PY" -c "import psycopg" 2>/dev/null; then
  die "psycopg 3 is missing in $PY: pip install 'psycopg[binary]' (requirements.lock pins it)"
fi
# A password in the URI moves to a PostgreSQL password file that only we can read (libpq reads PGPASSFILE);
# the URI that reaches `mlflow server`'s command line has none.
rm -f "$priv/pgpass"
uri=$(PGPASS_OUT="$priv/pgpass" "$PY" -c '
import os, sys
from urllib.parse import unquote, urlsplit, urlunsplit
uri = sys.stdin.read().strip()
u = urlsplit(uri)
if u.password is None:
    print(uri)
    sys.exit(0)
if not u.scheme.startswith("postgres"):
    sys.exit("mlflow-server.sh: only a PostgreSQL password can be kept off the command line; use PostgreSQL")
esc = lambda s: s.replace("\\", "\\\\").replace(":", "\\:")
user, db = unquote(u.username or ""), unquote(u.path.lstrip("/"))
line = ":".join(["*", "*", esc(db) or "*", esc(user), esc(unquote(u.password))])
tmp = os.environ["PGPASS_OUT"] + ".tmp"
with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
    fh.write(line + "\n")
os.replace(tmp, os.environ["PGPASS_OUT"])
netloc = u.netloc.rsplit("@", 1)[1]
print(urlunsplit(u._replace(netloc=f"{u.username}@{netloc}" if u.username else netloc)))
' <<<"$uri")
[ ! -f "$priv/pgpass" ] || export PGPASSFILE="$priv/pgpass"
(umask 022 && mkdir -p "$dest")  # artifacts are the lab's, not private like the rest

app=()
if [ "$auth" = 1 ]; then
  export MLFLOW_AUTH_ADMIN_PASSWORD="$pw"  # the environment, never argv: only its owner can read it (/proc)
  unset pw
  if [ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]; then  # one key for every worker and restart (CSRF)
    [ -s "$priv/flask_secret_key" ] || "$PY" -c 'import secrets; print(secrets.token_hex(32))' >"$priv/flask_secret_key"
    MLFLOW_FLASK_SERVER_SECRET_KEY=$(cat "$priv/flask_secret_key")
    export MLFLOW_FLASK_SERVER_SECRET_KEY
  fi
  # MLflow's auth config: every user reads every study (READ), writes (and manages) the ones they create.
  # configparser reads '%' as interpolation: double it in the values
  authdb="${MLFLOW_AUTH_DATABASE_URI:-sqlite:///$priv/basic_auth.db}" admin="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
  case "$authdb" in postgresql://*|postgres://*) authdb="postgresql+psycopg://${authdb#*://}" ;; esac
  cat >"$priv/basic_auth.ini.tmp" <<EOF
[mlflow]
default_permission = READ
database_uri = ${authdb//%/%%}
admin_username = ${admin//%/%%}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-60}
EOF
  mv "$priv/basic_auth.ini.tmp" "$priv/basic_auth.ini"
  export MLFLOW_AUTH_CONFIG_PATH="$priv/basic_auth.ini"
  app=(--app-name basic-auth)
fi
# No GenAI job runner (13 extra processes, ~2.4 GB) and no telemetry: docs/mlflow.md, "Why the store is set up this way"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true
exec "$PY" -m mlflow server "${app[@]}" --backend-store-uri "$uri" --artifacts-destination "$dest" --serve-artifacts \
  --host "$host" --port "${PORT:-5000}" --workers "${WORKERS:-4}" "${args[@]}"
