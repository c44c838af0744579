#!/usr/bin/env bash
# gpu_check.sh: does the GPU path work, and how long would the paper's 7B setting take? (issue 14, item 5)
#
# On a machine with one NVIDIA GPU, from the repo root, offline (HF_HUB_OFFLINE=1: nothing is
# downloaded; the default model must be in the HF cache), in under 8 minutes:
#   (a) a bf16 SNAP run of the default model through accelerate (configs/accelerate/single_gpu.yaml);
#   (b) the same through DeepSpeed ZeRO-2 with CPU offload (configs/accelerate/deepspeed_zero2_offload.yaml,
#       one process); skipped, with a line saying so, when deepspeed is not importable;
#   (c) timed SNAP training steps (SWD) on a randomly initialised Llama-2-7B-shaped model (bf16, batch
#       8 × 256 tokens; tests/speed/gpu_check_7b.py) and the projected wall time of the paper's 7B setting:
#       paper_steps × (step_none × paper_tokens/measured_tokens + (step_swd − step_none))
#       + ceil(eval_questions/eval_batch_size) × one eval batch (both upper bounds; see gpu_check_7b.py).
# It prints one table and exits 0 only when every part ran (a skipped (b) counts as ran); otherwise
# 1, naming the parts that failed. Bad arguments exit 2.
set -u

usage() {
    cat <<'EOF'
usage: tests/speed/gpu_check.sh [--dry-run] [--python PATH] [--entity SLUG] [--steps N] [--eval-limit N] [--out DIR]

  --dry-run       check the arguments and print the plan (the commands); needs no GPU, runs nothing
  --python PATH   the Python with snap-bench installed (default: python3 on PATH, or $PYTHON)
  --entity SLUG   entity of the runs (default: peter_parker)
  --steps N       training steps of runs (a) and (b) (default: 20)
  --eval-limit N  evaluation questions per set of runs (a) and (b) (default: 20)
  --out DIR       where the runs' stores and logs go (default: a new temporary folder)
  -h, --help      this text

Exit status: 0 every part ran, 1 a part failed (named), 2 bad arguments.
EOF
}

die_usage() { echo "gpu_check.sh: error: $1 (see --help)" >&2; exit 2; }

PY="${PYTHON:-python3}"
ENTITY=peter_parker
STEPS=20
EVAL_LIMIT=20
OUT=""
DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --dry-run) DRY=1 ;;
        --python|--entity|--steps|--eval-limit|--out)
            [ $# -ge 2 ] || die_usage "$1 needs a value"
            case "$1" in
                --python) PY="$2" ;;
                --entity) ENTITY="$2" ;;
                --steps) STEPS="$2" ;;
                --eval-limit) EVAL_LIMIT="$2" ;;
                --out) OUT="$2" ;;
            esac
            shift ;;
        *) die_usage "unknown argument $1" ;;
    esac
    shift
done
for pair in "--steps:$STEPS" "--eval-limit:$EVAL_LIMIT"; do
    v="${pair#*:}"
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || die_usage "${pair%%:*} $v: expected a positive integer"
done
[[ "$ENTITY" =~ ^[a-z0-9_]+$ ]] || die_usage "--entity $ENTITY: expected a slug such as peter_parker"

cd "$(dirname "$0")/../.." || exit 1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
ACC_ONE=configs/accelerate/single_gpu.yaml
ACC_DS=configs/accelerate/deepspeed_zero2_offload.yaml
RUN_ARGS=(-m snap_bench run --method snap --entity "$ENTITY" --set precision=bf16 --eval-limit "$EVAL_LIMIT"
          --max-steps "$STEPS" --json --no-progress)
CMD_A=("$PY" -m accelerate.commands.launch --config_file "$ACC_ONE" "${RUN_ARGS[@]}")
CMD_B=("$PY" -m accelerate.commands.launch --config_file "$ACC_DS" --num_processes 1 "${RUN_ARGS[@]}")
CMD_C=("$PY" tests/speed/gpu_check_7b.py --entity "$ENTITY")

if [ "$DRY" = 1 ]; then
    echo "gpu_check.sh plan (dry run: nothing runs; offline: HF_HUB_OFFLINE=1):"
    echo "  (a) bf16 SNAP run through accelerate:   ${CMD_A[*]} --results OUT/a"
    echo "  (b) the same through DeepSpeed ZeRO-2:  ${CMD_B[*]} --results OUT/b   (skipped if deepspeed is not importable)"
    echo "  (c) Llama-2-7B-shaped steps + projection: ${CMD_C[*]}"
    echo "  then one table; exit 0 only when every part ran"
    exit 0
fi

command -v "$PY" >/dev/null 2>&1 || [ -x "$PY" ] || { echo "gpu_check.sh: error: no python at $PY" >&2; exit 2; }
if [ -z "$OUT" ]; then OUT="$(mktemp -d -t snap-gpu-check-XXXXXX)"; fi
mkdir -p "$OUT" || exit 1
T0=$(date +%s)
declare -A STATUS SECS NOTE
FAILED=()

# Time limits per part (seconds): together 8 minutes at most.
declare -A LIMIT=([a]=150 [b]=180 [c]=150)

part() {  # part NAME RESULTS_SUBDIR CMD...: run, keep stdout (JSON) and stderr, record status and time
    local name="$1" sub="$2"; shift 2
    local t=$(date +%s) rc
    echo "gpu_check.sh: ($name) $*" >&2
    if [ -n "$sub" ]; then
        timeout "${LIMIT[$name]}" "$@" --results "$OUT/$sub" >"$OUT/$name.json" 2>"$OUT/$name.err"; rc=$?
    else
        timeout "${LIMIT[$name]}" "$@" >"$OUT/$name.json" 2>"$OUT/$name.err"; rc=$?
    fi
    SECS[$name]=$(( $(date +%s) - t ))
    if [ $rc -eq 0 ] && "$PY" -c "import json,sys; json.load(open(sys.argv[1]))" "$OUT/$name.json" 2>/dev/null; then
        STATUS[$name]=ok
    else
        STATUS[$name]="FAILED (exit $rc)"
        [ $rc -eq 124 ] && STATUS[$name]="FAILED (>${LIMIT[$name]}s)"
        NOTE[$name]="$(tail -n 1 "$OUT/$name.err" | cut -c1-100)"
        FAILED+=("$name")
    fi
}

summary_of_run() {  # one line from a run's JSON: precision, steps, train s, UA/RA/TA
    "$PY" - "$1" <<'EOF' 2>/dev/null || echo "—"
import json, sys
r = json.load(open(sys.argv[1]))
m = next(iter(r["metrics"].values()))
print(f"{r.get('precision', '?')}, {r['train']['steps']} steps, train {r['timings'].get('train', 0):.0f}s, "
      f"UA {m['UA']:.0f} RA {m['RA']:.0f} TA {m['TA']:.0f}")
EOF
}

part a a "${CMD_A[@]}"
[ "${STATUS[a]}" = ok ] && NOTE[a]="$(summary_of_run "$OUT/a.json")"

if "$PY" -c "import deepspeed" >/dev/null 2>&1; then
    part b b "${CMD_B[@]}"
    [ "${STATUS[b]}" = ok ] && NOTE[b]="$(summary_of_run "$OUT/b.json")"
else
    STATUS[b]="skipped"; SECS[b]=0; NOTE[b]="deepspeed is not importable (pip install deepspeed)"
fi

part c "" "${CMD_C[@]}"
if [ "${STATUS[c]}" = ok ]; then
    NOTE[c]="$("$PY" - "$OUT/c.json" <<'EOF' 2>/dev/null || echo "—"
import json, sys
r = json.load(open(sys.argv[1]))
p = r["paper"]
print(f"step {r['step_swd_s']:.2f}s (no SWD {r['step_none_s']:.2f}s) at {r['batch']}x{r['seq']}; "
      f"paper 7B: {p['steps']} steps x {r['paper_step_s']:.2f}s + eval {r['projected_eval_s']:.0f}s "
      f"= {r['projected_total_s'] / 60:.1f} min on one {r['device']}")
EOF
)"
fi

printf '\n%-34s %-18s %6s  %s\n' "part" "status" "secs" "result"
printf '%s\n' "------------------------------------------------------------------------------------------------"
printf '%-34s %-18s %6s  %s\n' "(a) bf16 run, accelerate" "${STATUS[a]}" "${SECS[a]}" "${NOTE[a]:-}"
printf '%-34s %-18s %6s  %s\n' "(b) bf16 run, DeepSpeed ZeRO-2" "${STATUS[b]}" "${SECS[b]}" "${NOTE[b]:-}"
printf '%-34s %-18s %6s  %s\n' "(c) 7B-shaped steps + projection" "${STATUS[c]}" "${SECS[c]}" "${NOTE[c]:-}"
echo "total $(( $(date +%s) - T0 ))s; outputs in $OUT"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "gpu_check.sh: failed: ${FAILED[*]}" >&2
    exit 1
fi
exit 0
