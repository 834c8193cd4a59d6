#!/usr/bin/env bash
# The GPU reference folders of issue 31 (item 8), made by the README's own commands on a GPU:
#
#   results/gpu-mnist5k-quick     python -m benchmarks.run --device cuda --seeds 0,1,2   (+ the lecture figures)
#   results/gpu-mnist5k-lecture   python -m benchmarks.run --device cuda --preset lecture (+ the lecture figures)
#
# Run it on the GPU machine from the repo root, with .whl/ carried (see benchmarks/gpu_check.sh),
# once gpu_check.sh has shown the fast path works. The runs live in gpu-runs/ (git-ignored), which a
# warm machine keeps between calls: a call that runs out of time stops each training with its
# checkpoint (SIGTERM), and the same call again goes on from there, until one ends with "== done".
# Last, item 6: the quick zoo in bf16 over the same three seeds, compared with the fp32 (TF32)
# folder number by number against its seeds' intervals (bf16-vs-fp32.txt); bf16 becomes the GPU
# default only if every number is inside.
# Writes into $OUT: gpu_references.log, bf16-vs-fp32.txt and one tar.gz per folder, without
# checkpoints; unpack gpu-* into results/ here, then `python -m benchmarks.index results`.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT" gpu-runs
DEADLINE=${GPU_CHECK_SECONDS:-540}  # seconds for the whole script: a lent machine's call allows 600
DEVICE=${DEVICE:-cuda}
RUN_EXTRA=${RUN_EXTRA:-}  # more runner arguments, appended; a dry run here: DEVICE=cpu RUN_EXTRA="--preset smoke --models ae"
exec > >(tee -a "$OUT/gpu_references.log") 2>&1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg GENZOO_CACHE=/tmp/genzoo-cache

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "no wheels: run benchmarks/gpu_wheels.sh where registries can be reached, and carry .whl"; exit 1; }
rm -rf /tmp/site/tests  # torch-fidelity's wheel ships a top-level `tests` package

# step NAME COMMAND...: COMMAND under a timeout of what is left before the deadline, less a reserve
# for packing; SIGTERM first, so a training in flight saves its checkpoint.
step() {
    local name=$1 budget=$((DEADLINE - SECONDS - 30))
    shift
    if (( budget < 20 )); then echo "== $name: skipped, $((DEADLINE - SECONDS)) s left"; return 1; fi
    echo "== $name (at most $budget s)"
    timeout -s TERM -k 30 "$budget" "$@"
    local rc=$?
    echo "== $name: exit $rc after $SECONDS s in all"
    return $rc
}

# shellcheck disable=SC2086  # RUN_EXTRA is a list of arguments
step "quick, seeds 0,1,2" python3 -m benchmarks.run --device "$DEVICE" --seeds 0,1,2 --out gpu-runs/gpu-mnist5k-quick $RUN_EXTRA \
    && step "quick: lecture figures" python3 -m benchmarks.explore gpu-runs/gpu-mnist5k-quick --device "$DEVICE" \
    && step "lecture, seed 0" python3 -m benchmarks.run --device "$DEVICE" --preset lecture --out gpu-runs/gpu-mnist5k-lecture $RUN_EXTRA \
    && step "lecture: lecture figures" python3 -m benchmarks.explore gpu-runs/gpu-mnist5k-lecture --device "$DEVICE" \
    && step "quick in bf16, seeds 0,1,2 (item 6)" python3 -m benchmarks.run --device "$DEVICE" --seeds 0,1,2 --precision bf16 \
        --out gpu-runs/bf16-mnist5k-quick $RUN_EXTRA \
    && python3 -m benchmarks.compare gpu-runs/bf16-mnist5k-quick gpu-runs/gpu-mnist5k-quick > "$OUT/bf16-vs-fp32.txt" 2>&1
finished=$?
for run in gpu-runs/*/; do
    name=$(basename "$run")
    tar -czf "$OUT/$name.tar.gz" -C gpu-runs --exclude=checkpoints --exclude=snapshots --exclude='*.safetensors' \
        --exclude='*.pt' --exclude='.*.lock' --exclude='.*.tmp' "$name"
done
ls -l "$OUT"
if (( finished == 0 )); then
    echo "== done after $SECONDS s: every folder finished"
else  # a step ran out of time or failed: its log above says which
    echo "== not finished after $SECONDS s: run this again on the warm machine, it goes on from the checkpoints"
fi
