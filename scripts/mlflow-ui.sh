#!/usr/bin/env bash
# Browse the study's MLflow runs: a local MLflow server over results/mlflow.db on http://127.0.0.1:${PORT:-5000}
# (loopback only; pass --host 0.0.0.0 yourself to expose it). Job runs are nested under one run per study.
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true
exec "${PASSPRUNE_VENV:-.venv}/bin/mlflow" server --backend-store-uri "${MLFLOW_TRACKING_URI:-sqlite:///results/mlflow.db}" \
  --host 127.0.0.1 --port "${PORT:-5000}" --workers 1 "$@"
