#!/usr/bin/env bash
# Every GPU check of issue 31 in one call, most important first, within about 9 minutes.
#
#   bash benchmarks/gpu_wheels.sh                       # once, where package registries can be reached
#   bash benchmarks/gpu_check.sh                        # on the GPU machine, from the repo root, with .whl/ carried
#
# Phases, each under its own timeout and the script's deadline (a phase that would start with too
# little time left is skipped and says so):
#   1. the machine: nvidia-smi, torch, the carried packages; whether random draws survive a failed capture
#   2. pytest tests/test_graphs.py and the CUDA tests of tests/test_fused.py and tests/test_replay.py:
#      graphed steps (and fused seeds' graphed steps) train like eager ones, replayed samplers draw
#      the eager samples, fallbacks say why
#   3. benchmarks.gpu_bench: per model GFLOP/step, steps/s eager vs graphed, TFLOP/s and share of peak,
#      peak memory, sampling images/s; what deterministic kernels cost and which ops have none
#   4. the runner: a smoke run (fills the feature-net cache, so the timed runs below do not pay for it),
#      then quick with --graphs on for three seeds trained together (--fused-seeds on), the same with
#      --deterministic and no curves twice (are the tables identical?), and the three seeds trained one by one
#      (--fused-seeds off), each timed end to end
# Writes into $OUT (at most 8 files come back from a lent machine): gpu_check.log, summary.md,
# pytest.xml, throughput.md, determinism.md, gpu_bench.json, dmon.txt, runs.tar.gz (the run
# folders without checkpoints).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
DEADLINE=${GPU_CHECK_SECONDS:-530}       # seconds for the whole script: a lent machine's call allows 600
RUN_MODELS=${RUN_MODELS:-ae,dcgan,ddpm,pixelcnn}  # the four issue 31 timed eagerly
RUN_SEEDS=${RUN_SEEDS:-0,1,2}
DET_MODELS=${DET_MODELS:-ae,dcgan,ddpm}   # the models whose tables differed between two CUDA runs
RUNS=/tmp/runs
SUMMARY=$OUT/summary.md
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 MPLBACKEND=Agg GENZOO_CACHE=/tmp/genzoo-cache

left() { echo $((DEADLINE - SECONDS)); }

# phase NAME CAP COMMAND...: run COMMAND under a timeout of CAP seconds, or of what is left before
# the deadline (less a reserve for the summary); skip it when under 20 s would remain.
phase() {
    local name=$1 cap=$2 budget
    shift 2
    PHASE_SECONDS=""
    budget=$(( $(left) - 20 ))
    (( budget > cap )) && budget=$cap
    if (( budget < 20 )); then
        echo "== $name: skipped, $(left) s left"
        echo "| $name | skipped | - |" >> "$SUMMARY"
        return 1
    fi
    echo "== $name (at most ${budget} s, $(left) s left)"
    local start=$SECONDS
    timeout -k 10 "$budget" "$@"
    local rc=$?
    PHASE_SECONDS=$((SECONDS - start))
    echo "== $name: exit $rc after $PHASE_SECONDS s"
    echo "| $name | $rc$( (( rc == 124 || rc == 137 )) && echo ' (timed out)') | $PHASE_SECONDS |" >> "$SUMMARY"
    return $rc
}

QUICK=(python3 -m benchmarks.run --preset quick)  # each run below gets a fresh folder: nothing is reused

printf '# GPU check\n\n| phase | exit | seconds |\n|---|---|---|\n' > "$SUMMARY"

# -- 1. the machine -------------------------------------------------------------------------------
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "no wheels: run benchmarks/gpu_wheels.sh where registries can be reached, and carry .whl"; exit 1; }
rm -rf /tmp/site/tests  # torch-fidelity's wheel ships a top-level `tests` package
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv
python3 - <<'EOF'
import importlib.metadata as m, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name())
print(", ".join(f"{p} {m.version(p)}" for p in ("diffusers", "normflows", "torch-fidelity", "mlxtend", "huggingface-hub")))
EOF
# After a capture that fails: can the process still draw random numbers, and does the caching
# allocator still free memory? Torch before the per-capture random state keeps the generators in
# capture mode (zoo.graphs.capturing sets them free), and may keep the failed capture's memory pool
# open. genzoo's capture first, then torch's own (which leaves them stuck), in one process.
PROBE=$(timeout -k 5 90 python3 - <<'EOF' 2>&1
import torch
from zoo import graphs

def fails():
    torch.randn(4, device="cuda")
    torch.cuda.synchronize()  # not allowed while capturing: the capture fails

def torch_capture(graph, stream):
    with torch.cuda.stream(stream):
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            fails()
        finally:
            graph.capture_end()

for how in ("genzoo", "torch"):
    try:
        if how == "genzoo":
            with graphs.capturing(torch.cuda.CUDAGraph(), torch.cuda.Stream()):
                fails()
        else:
            torch_capture(torch.cuda.CUDAGraph(), torch.cuda.Stream())
        print(f"- {how}: the capture did NOT fail: this check says nothing")
        continue
    except RuntimeError as e:
        print(f"- {how}: the capture failed, as meant ({str(e).strip().splitlines()[0][:100]})")
    try:
        torch.randn(4, device="cuda")
        torch.cuda.synchronize()
        print(f"- {how}: random draws after the failed capture: ok")
    except RuntimeError as e:
        print(f"- {how}: random draws after the failed capture: STUCK ({str(e).strip().splitlines()[0][:100]})")
    try:
        block = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
        del block
        torch.cuda.empty_cache()  # frees nothing while the allocator thinks a capture is under way
        print(f"- {how}: reserved after freeing 256 MiB and empty_cache: {torch.cuda.memory_reserved() >> 20} MiB")
    except RuntimeError as e:
        print(f"- {how}: memory: {str(e).strip().splitlines()[0][:100]}")
EOF
)
echo "$PROBE"

# -- 2. correctness: graphed steps train like eager ones ------------------------------------------
phase "pytest tests/test_graphs.py, CUDA tests of test_fused.py and test_replay.py" 170 python3 -m pytest -q -s -p no:cacheprovider \
    tests/test_graphs.py tests/test_fused.py tests/test_replay.py -k "cuda or graph" \
    --junitxml="$OUT/pytest.xml" -o junit_logging=system-out

# -- 3. the throughput and determinism tables -----------------------------------------------------
BENCH=$(( $(left) - 335 ))   # the runner phases' caps (300 s), gpu_bench's 15 s over BENCH, 20 s kept back
(( BENCH > 190 )) && BENCH=190
phase "gpu_bench" $((BENCH + 15)) python3 -m benchmarks.gpu_bench "$OUT" --seconds "$BENCH"

# -- 4. the runner, end to end ----------------------------------------------------------------------
nvidia-smi dmon -s um -d 1 > "$OUT/dmon.txt" 2>&1 &
DMON=$!
phase "smoke, warms the feature-net cache" 60 \
    python3 -m benchmarks.run --preset smoke --models ae --graphs on --out "$RUNS/smoke"
phase "quick --graphs on --fused-seeds on: $RUN_MODELS, seeds $RUN_SEEDS" 120 "${QUICK[@]}" --out "$RUNS/fused-on" \
    --models "$RUN_MODELS" --seeds "$RUN_SEEDS" --graphs on --fused-seeds on
ON_SECONDS=${PHASE_SECONDS:-}
# the same command twice, without the quality curves (their evaluations are left out to save time)
phase "quick --deterministic (a): $DET_MODELS" 60 "${QUICK[@]}" --out "$RUNS/det-a" --models "$DET_MODELS" --seeds 0 --graphs on \
    --deterministic --curves off
phase "quick --deterministic (b): $DET_MODELS" 60 "${QUICK[@]}" --out "$RUNS/det-b" --models "$DET_MODELS" --seeds 0 --graphs on \
    --deterministic --curves off
phase "quick --graphs on --fused-seeds off: $RUN_MODELS, seeds $RUN_SEEDS" 150 "${QUICK[@]}" --out "$RUNS/fused-off" \
    --models "$RUN_MODELS" --seeds "$RUN_SEEDS" --graphs on --fused-seeds off
OFF_SECONDS=${PHASE_SECONDS:-}
kill "$DMON" 2>/dev/null

# -- the summary ----------------------------------------------------------------------------------------
{
    printf '\n## after a failed capture\n\n%s\n' "$PROBE"
    printf '\n## quick, end to end (%s, seeds %s)\n\n' "$RUN_MODELS" "$RUN_SEEDS"
    printf -- '- seeds trained together (--fused-seeds on): %s s\n- one by one (--fused-seeds off): %s s\n' "${ON_SECONDS:-?}" "${OFF_SECONDS:-?}"
    python3 -m benchmarks.compare "$RUNS/fused-on" "$RUNS/fused-off" 2>&1
    printf '\n## the same command twice, --deterministic --curves off (%s)\n\n' "$DET_MODELS"
} >> "$SUMMARY"
# every quality and likelihood number and weights hash, record by record
python3 -m benchmarks.compare "$RUNS/det-b" "$RUNS/det-a" --identical >> "$SUMMARY" 2>&1
for run in "$RUNS"/*/; do  # each run's own record of its wall-clock
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["run"]; print(f"- {sys.argv[2]}: history", [h.get("wall_seconds") for h in r.get("history", [])])' \
        "$run/results.json" "$(basename "$run")" >> "$SUMMARY" 2>/dev/null
done
tar -czf "$OUT/runs.tar.gz" -C /tmp --exclude=checkpoints --exclude='*.safetensors' --exclude='resume.pt' runs 2>/dev/null
echo
cat "$SUMMARY"
cat "$OUT/throughput.md" "$OUT/determinism.md" 2>/dev/null
echo "== done after $SECONDS s"
