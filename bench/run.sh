#!/usr/bin/env bash
# passprune's benchmarks: prints a table per part and writes bench/README.md (machine, command, figures).
#
#   bash bench/run.sh            # every part (about 6 minutes on an idle 2-core machine)
#   bash bench/run.sh rules      # only part 4 (reads a finished embedded-default run's benchmark files)
#   bash bench/run.sh dryrun     # only part 5 (config/paper.yaml)
#   bash bench/run.sh train startup latency mlflow   # any of: train startup latency rules dryrun mlflow readme
#   bash bench/run.sh throughput # per-architecture training throughput for `passprune estimate` (bench/throughput.py,
#                                # its own file bench/throughput.json; minutes on CPU, so not in the default set)
#
# Each part stores its figures in bench/figures/<part>.json; bench/README.md is rebuilt from all stored parts
# after every run, so rerunning one part keeps the others' figures. Uses the project venv (.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
if [ ! -x "$REPO/.venv/bin/python" ]; then
    echo "bench/run.sh: no project venv at $REPO/.venv; run 'bash scripts/setup.sh' first" >&2
    exit 1
fi
export PATH="$REPO/.venv/bin:$PATH"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"   # each part sets torch's threads itself; stated in its notes
export MLFLOW_DISABLE_TELEMETRY=true
export TQDM_DISABLE=1

parts=("$@")
if [ ${#parts[@]} -eq 0 ]; then
    # order matters: mlflow reads train's ms/step, startup reads rules' job count and summed job time
    parts=(train mlflow rules startup latency dryrun)
fi
cmd="bash bench/run.sh${*:+ $*}"
for part in "${parts[@]}"; do
    case "$part" in
        train)   python bench/train_loop.py ;;
        startup) python bench/startup.py ;;
        latency) python bench/latency.py ;;
        rules)   python bench/rules.py ;;
        dryrun)  python bench/dryrun.py ;;
        mlflow)  python bench/mlflow_overhead.py ;;
        throughput) python bench/throughput.py ;;  # GPU-hours input of `passprune estimate`; not in the default set
        readme)  ;;
        *) echo "bench/run.sh: unknown part '$part' (train startup latency rules dryrun mlflow throughput readme)" >&2
           exit 2 ;;
    esac
done
python bench/readme.py --command "$cmd"
