#!/usr/bin/env bash
# Test command (CI runs exactly this): set up, start the local single-node SLURM cluster, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/${PASSPRUNE_VENV:-.venv}/bin:$PATH"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  bash scripts/slurm-ci.sh install
  bash scripts/slurm-ci.sh start
  export PASSPRUNE_REQUIRE_SLURM=1
  # a real browser for the MLflow UI test (Debian's chromium; it brings its own dependencies)
  if ! command -v chromium >/dev/null 2>&1; then
    echo "[test] installing Debian's chromium for the MLflow UI test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  export PASSPRUNE_REQUIRE_BROWSER=1
  # a real PostgreSQL for the MLflow server tests (Debian's; the tests start a private cluster on loopback)
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    echo "[test] installing Debian's postgresql for the MLflow server tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  export PASSPRUNE_REQUIRE_POSTGRES=1
fi
python -m pytest "$@"
