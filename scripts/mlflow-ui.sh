#!/usr/bin/env bash
# Browse the studies' MLflow runs: a local MLflow server over results/mlflow.db on http://127.0.0.1:${PORT:-5000}
# (loopback only: it has no logins; a server others reach is scripts/mlflow-server.sh, with MLflow's
# authentication, docs/mlflow.md). One experiment per study (<experiment>/<study>),
# job runs nested under its study run; it first prints each study's runs table link
# (http://127.0.0.1:PORT/#/experiments/<id>/runs). Artifacts are served from the folder that holds the database
# (results/<study>/mlflow/...), so a moved results folder works: MLFLOW_TRACKING_URI=sqlite:////new/place/mlflow.db.
set -euo pipefail
cd "$(dirname "$0")/.."
host=127.0.0.1 args=("$@")
for i in "${!args[@]}"; do  # a --host among the extra arguments wins over ours
  case "${args[$i]}" in
    --host|-h) host="${args[$((i + 1))]:-}" ;;
    --host=*) host="${args[$i]#--host=}" ;;
  esac
done
case "$host" in
  127.*|localhost|::1|'[::1]') ;;
  *) echo "mlflow-ui.sh: no logins here, so no --host $host: share studies with scripts/mlflow-server.sh" \
       "(MLflow's authentication; docs/mlflow.md, \"A server for the lab\")" >&2; exit 2 ;;
esac
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true
uri="${MLFLOW_TRACKING_URI:-sqlite:///results/mlflow.db}"
case "$uri" in
  sqlite:///*) dest="$(dirname "${uri#sqlite:///}")" ;;  # sqlite:///rel/x.db -> rel, sqlite:////abs/x.db -> /abs
  *) dest="${MLFLOW_ARTIFACTS_DESTINATION:-results}" ;;
esac
# Where to look: MLflow 3 opens an experiment on its GenAI overview; a study's runs are its runs table
echo "Each study's runs (open once the server says it is running; expand the study run for its job runs):"
"${PASSPRUNE_VENV:-.venv}/bin/python" -m passprune.cli track-urls --uri "$uri" \
  --base "http://127.0.0.1:${PORT:-5000}" || echo "  (could not list the studies; http://127.0.0.1:${PORT:-5000})"
exec "${PASSPRUNE_VENV:-.venv}/bin/mlflow" server --backend-store-uri "$uri" --artifacts-destination "$dest" \
  --serve-artifacts --host 127.0.0.1 --port "${PORT:-5000}" --workers 1 "$@"
