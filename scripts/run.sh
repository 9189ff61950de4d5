#!/usr/bin/env bash
# Main job: set up, then run the whole DAG on the embedded default (config/config.yaml).
# Extra arguments go to snakemake, e.g. `bash scripts/run.sh --configfile config/test.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/${PASSPRUNE_VENV:-.venv}/bin:$PATH"
snakemake --cores "${CORES:-$(nproc)}" "$@"
echo
echo "Tables and figures: $PWD/reports/ (README.md, tables/, figures/); one row per run: $PWD/results/summary.csv"
