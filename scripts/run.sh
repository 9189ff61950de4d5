#!/usr/bin/env bash
# Main job: set up, then run the whole DAG on the embedded default (config/config.yaml).
# Extra arguments go to snakemake, e.g. `bash scripts/run.sh --configfile config/test.yaml`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/${PASSPRUNE_VENV:-.venv}/bin:$PATH"
snakemake --cores "${CORES:-$(nproc)}" "$@"
# the study's folder: results/<study>/ (the `study:` of the --configfile given, else of config/config.yaml)
cfg=config/config.yaml
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --configfile|--configfiles) cfg=${args[$((i + 1))]} ;;
    --configfile=*) cfg=${args[$i]#--configfile=} ;;
  esac
done
study=$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["study"])' "$cfg")
echo
echo "Claims, tables and figures: $PWD/results/$study/reports/ (README.md, tables/, figures/)"
echo "One row per run: $PWD/results/$study/summary.csv"
# MLflow: the link to the study's runs table, when tracking logged it (never fails the run)
if [ -f "results/$study/mlflow_study.json" ]; then
  urls=$(timeout 120 passprune track-urls "results/$study" 2>/dev/null) || true
  if [ -n "$urls" ]; then
    echo "MLflow, the study's runs table (a SQLite store is served by \`bash scripts/mlflow-ui.sh\`):"
    echo "$urls"
  fi
fi
