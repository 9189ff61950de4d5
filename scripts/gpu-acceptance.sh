#!/usr/bin/env bash
# GPU acceptance: one command for the first machine with a GPU (and after every torch or driver change), at most
# 10 minutes on one GPU. It
#   1. prints the environment: torch, its CUDA, cuDNN, the driver (nvidia-smi), the wheel's arch list, the GPU;
#   2. runs the paper protocol in miniature (config/paper.yaml changed only in sizes, device: cuda; the fixtures of
#      tests/paper_fixtures.py) through Snakemake to the report;
#   3. measures (bench/gpu.py) the peak GPU memory of a PASS search step and a Taylor importance pass at ResNet-50 /
#      224 px / batch 256 in fp32 and with bf16 autocast, training throughput per paper architecture, and
#      masked-vs-pruned logits and latency on the GPU;
#   4. writes bench/figures/gpu.json (docs/cluster.md, "GPU acceptance", says what to do with it).
#
#   bash scripts/gpu-acceptance.sh                 # on a GPU machine: writes bench/figures/gpu.json
#   bash scripts/gpu-acceptance.sh --cpu --out DIR # dry mode (CI): the same steps on the CPU at tiny sizes, the DAG
#                                                  # only planned (snakemake -n); writes only under DIR
# Options: --out DIR (where the miniature, the logs and, with --cpu, gpu.json go; default: a temporary folder),
#          --cores N (Snakemake's cores for the DAG; default: the machine's).
# Exit status: non-zero when the environment cannot use the GPU, the DAG fails, or a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
if [ -x "$REPO/.venv/bin/python" ]; then export PATH="$REPO/.venv/bin:$PATH"; fi
export MLFLOW_DISABLE_TELEMETRY=true TQDM_DISABLE=1

CPU=0 OUT="" CORES=$(nproc)
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu) CPU=1 ;;
        --out) OUT=$2; shift ;;
        --cores) CORES=$2; shift ;;
        *) echo "gpu-acceptance.sh: unknown option '$1' (--cpu, --out DIR, --cores N)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$CPU" = 1 ] && [ -z "$OUT" ]; then
    echo "gpu-acceptance.sh --cpu: give --out DIR (the dry mode never writes bench/figures/gpu.json)" >&2; exit 2
fi
OUT=${OUT:-$(mktemp -d -t gpu-acceptance.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEVICE=cuda; [ "$CPU" = 1 ] && DEVICE=cpu
T0=$(date +%s)

echo "== environment"
python - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA (wheel) {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
print(f"arch list: {torch.cuda.get_arch_list() if torch.version.cuda else []}")
print(f"cuda available: {torch.cuda.is_available()}, devices: {torch.cuda.device_count()}")
for i in range(torch.cuda.device_count()):
    print(f"  cuda:{i} {torch.cuda.get_device_name(i)} sm_{''.join(map(str, torch.cuda.get_device_capability(i)))}")
EOF
nvidia-smi --query-gpu=driver_version,name,memory.total --format=csv 2>/dev/null || echo "nvidia-smi: not available"
if [ "$CPU" = 0 ]; then  # the jobs' own check: an indexed device, or the reason CUDA cannot be used and the fix
    PASSPRUNE_GPU_LOCKS="$OUT/gpu_locks" python -c \
        "from passprune.devices import resolve_device; print('resolve_device(\"cuda\") ->', resolve_device('cuda'))"
fi

echo "== the paper protocol in miniature (device: $DEVICE) under $OUT"
# on a GPU every method runs on both ResNet block types (71 jobs); the CPU dry mode plans the CI miniature (52)
MINI=(); [ "$CPU" = 0 ] && MINI=(--every-method)
python -m tests.paper_fixtures --out "$OUT" --device "$DEVICE" "${MINI[@]}"
DRY=(); [ "$CPU" = 1 ] && DRY=(-n)
T1=$(date +%s)
set +e
PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}" snakemake -s "$REPO/Snakefile" -d "$OUT/work" \
    --configfile "$OUT/config.yaml" --cores "$CORES" "${DRY[@]}" >"$OUT/dag.log" 2>&1
RC=$?
set -e
SECONDS_DAG=$(( $(date +%s) - T1 ))
python - "$OUT" "$RC" "$SECONDS_DAG" "$DEVICE" "$CPU" <<'EOF'
import json, pathlib, re, sys

out, rc, seconds, device, cpu = pathlib.Path(sys.argv[1]), *map(int, sys.argv[2:4]), sys.argv[4], sys.argv[5] == "1"
log = (out / "dag.log").read_text(errors="replace")
total = re.search(r"^total\s+(\d+)$", log, re.M)
records = [p for p in (out / "work" / "results").rglob("metrics.json") if "mlflow" not in p.parts]
ran_on = sorted({str(json.loads(p.read_text()).get("provenance", {}).get("device")) for p in records})
dag = {"ran": not cpu, "rc": rc, "seconds": seconds, "jobs": int(total.group(1)) if total else None,
       "finished": log.count("Finished jobid"), "device": device, "records": len(records), "ran_on": ran_on,
       "log": str(out / "dag.log")}
(out / "dag.json").write_text(json.dumps(dag) + "\n")
EOF
cat "$OUT/dag.json"
if [ "$RC" != 0 ]; then tail -40 "$OUT/dag.log"; fi

echo "== memory, throughput, masked vs pruned"
ARGS=(--dag "$OUT/dag.json")
[ "$CPU" = 1 ] && ARGS+=(--cpu --out "$OUT/gpu.json")
python bench/gpu.py "${ARGS[@]}"
echo "gpu-acceptance.sh: done in $(( $(date +%s) - T0 )) s (DAG rc $RC)"
exit "$RC"
