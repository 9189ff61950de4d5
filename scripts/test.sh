#!/usr/bin/env bash
# Test command (CI runs exactly this): set up, then pytest in two tiers, each printing its 15 slowest tests:
#   1. the fast tier (-m "not e2e"): everything but whole-DAG runs, SLURM and real servers; the edit-test loop,
#      on $PASSPRUNE_TEST_WORKERS pytest-xdist workers (default 2, one per core here; 0 runs it serially);
#   2. the end-to-end tier (-m e2e): the config/test.yaml DAG once, SLURM, kill/resume, MLflow servers; serial.
#
#   bash scripts/test.sh                       # both tiers (CI)
#   bash scripts/test.sh --fast                # the fast tier only
#   bash scripts/test.sh --e2e                 # the end-to-end tier only
#   bash scripts/test.sh --fast -k pass -x     # anything else goes to pytest, in each tier run
#
# Exits non-zero if either tier fails. Both tiers run even when the first fails, so one run reports all;
# on success pytest's own summary line is the last line printed.
set -euo pipefail
cd "$(dirname "$0")/.."

tiers=(fast e2e)
case "${1:-}" in
  --fast) tiers=(fast); shift ;;
  --e2e) tiers=(e2e); shift ;;
esac

bash scripts/setup.sh
export PATH="$PWD/${PASSPRUNE_VENV:-.venv}/bin:$PATH"

# An installed SLURM whose controller is down costs every Snakemake start ~9 s: the SLURM executor plugin asks
# `scontrol show config` at import time and scontrol retries. So the fast tier starts the local cluster too
# when SLURM is installed (a few seconds); it installs nothing.
if [[ " ${tiers[*]} " != *" e2e "* ]] && [ "$(id -u)" = 0 ] && command -v slurmctld >/dev/null 2>&1; then
  bash scripts/slurm-ci.sh start || echo "[test] could not start the local SLURM cluster: Snakemake tests will be slower"
fi

# The end-to-end tier's services, as root on Debian/Ubuntu: SLURM, a browser, PostgreSQL.
if [[ " ${tiers[*]} " == *" e2e "* ]] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
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

workers=${PASSPRUNE_TEST_WORKERS:-2}
python -c "import xdist" 2>/dev/null || workers=0  # pytest-xdist is in requirements.lock; without it, serial
failed=()
for tier in "${tiers[@]}"; do
  if [ "$tier" = fast ]; then
    args=(-m "not e2e")
    # a whole test file per worker: module fixtures (a dense model, a built report) are made once
    [ "$workers" -gt 0 ] && args+=(-n "$workers" --dist loadfile)
  else
    args=(-m e2e)
  fi
  echo "[test] ${tier} tier: pytest ${args[*]} $*"
  rc=0
  python -m pytest "${args[@]}" --durations=15 "$@" || rc=$?
  # exit 5 = no test collected: fine when the arguments narrowed the run to the other tier, a failure otherwise
  if [ "$rc" = 5 ] && [ $# -gt 0 ]; then
    echo "[test] ${tier} tier: no test matches the arguments"
    rc=0
  fi
  [ "$rc" = 0 ] || failed+=("${tier} (pytest exit ${rc})")
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "[test] FAILED: ${failed[*]}"
  exit 1
fi
