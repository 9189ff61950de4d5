#!/usr/bin/env bash
# A shared MLflow tracking server for a lab: PostgreSQL backend (psycopg 3) and artifacts proxied to a shared
# folder, so every job (a SLURM node, a laptop) only needs MLFLOW_TRACKING_URI=http://HOST:PORT.
# See docs/mlflow.md. Settings (environment):
#   MLFLOW_BACKEND_STORE_URI      postgresql://USER[:PASSWORD]@HOST:PORT/DB   (required; psycopg 3 is used)
#   MLFLOW_ARTIFACTS_DESTINATION  a folder every user can reach, e.g. the results/ folder on shared storage
#                                 (studies' artifacts land in <it>/<study>/mlflow/<run_id>/artifacts)  (required)
#   HOST (127.0.0.1)  PORT (5000)  WORKERS (4)
# Extra arguments go to `mlflow server`, e.g. --host 0.0.0.0 --allowed-hosts "headnode,headnode:5000".
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PASSPRUNE_VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
uri="${MLFLOW_BACKEND_STORE_URI:-}"
dest="${MLFLOW_ARTIFACTS_DESTINATION:-}"
if [ -z "$uri" ] || [ -z "$dest" ]; then
  echo "mlflow-server.sh: set MLFLOW_BACKEND_STORE_URI=postgresql://USER@HOST:PORT/DB and" \
       "MLFLOW_ARTIFACTS_DESTINATION=/shared/folder (docs/mlflow.md)" >&2
  exit 2
fi
case "$uri" in  # SQLAlchemy 2.0 maps plain postgresql:// to psycopg2; this project ships psycopg 3
  postgresql://*|postgres://*) uri="postgresql+psycopg://${uri#*://}" ;;
esac
if [[ "$uri" == postgresql+psycopg://* ]] && ! "$PY" -c "import psycopg" 2>/dev/null; then
  echo "mlflow-server.sh: psycopg 3 is missing in $PY: pip install 'psycopg[binary]' (requirements.lock pins it)" >&2
  exit 2
fi
mkdir -p "$dest"
# No GenAI job runner (13 extra processes, ~2.4 GB) and no telemetry: docs/mlflow.md, "Why the store is set up this way"
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true
exec "$PY" -m mlflow server --backend-store-uri "$uri" --artifacts-destination "$dest" --serve-artifacts \
  --host "${HOST:-127.0.0.1}" --port "${PORT:-5000}" --workers "${WORKERS:-4}" "$@"
