#!/usr/bin/env bash
# GPU figures (issue 24): time the repo's GPU knobs on the GPU there is and write the figures into
# BENCHMARKS.md, between <!-- gpu-figures:start --> and <!-- gpu-figures:end --> (appended if absent).
#
#   bash scripts/gpu_figures.sh --first-pass    # ~1-2 min, tiny sizes: every step runs (into $WORK)
#   bash scripts/gpu_figures.sh                 # ~5 min: the figures, into BENCHMARKS.md
#   bash scripts/gpu_figures.sh --quick --out /tmp/B.md   # CPU, tiny: what the test runs
#
# The steps, each timed as a whole process and run in its own folder $WORK/run/<step> (Hydra's
# outputs/ and multirun/ land there, never in the repo's); a step that fails is reported with its
# last error line and the next one runs (the exit code is 1 at the end). Only a failed set-up stops.
#   setup      packages (the wheels of bench_out/gpu_carry/wheels where missing) and the data
#   grid       python train.py -m lr=0.01,0.001 batch_size=100,1000 shuffle=true,false (as typed)
#   grid_jobs  the same with hydra/launcher=joblib hydra.launcher.n_jobs=4: jobs sharing the GPU
#   fast       python train.py experiment=fashion_mnist_fast test_every_epoch=true: time to 93%
#   bench      python scripts/bench.py --device cuda: s/epoch of every model, batch 100 and 1000,
#              fp32, bf16, compile=true (CUDA graphs), and 1, 2, 4 jobs at once
#   best       python train.py experiment=fashion_mnist_best: its test accuracy, run only while
#              the budget lasts (and stopped when it is spent)
#
# Options: --out FILE (default: BENCHMARKS.md; with --quick or --first-pass $WORK/BENCHMARKS.md),
# --work DIR (default bench_out/gpu_figures: site/ packages, data/, run/ emptied each time),
# --budget SECONDS (the whole run, for the best preset; default 300, quick 600),
# --carry DIR (wheels/ and fashion-mnist/ from scripts/gpu_wheels.sh; default bench_out/gpu_carry).
# PYTHON=... the interpreter (default .venv/bin/python if there, else python3: on a GPU machine
# the one holding torch). A GPU machine without a package index: see docs/gpu.md.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=full OUT="" WORK="$REPO/bench_out/gpu_figures" BUDGET="" CARRY="$REPO/bench_out/gpu_carry"
while (($#)); do
  case $1 in
    --quick) MODE=quick ;;
    --first-pass) MODE=first-pass ;;
    --out) OUT=$2; shift ;;
    --work) WORK=$2; shift ;;
    --budget) BUDGET=$2; shift ;;
    --carry) CARRY=$2; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

GRID=(lr=0.01,0.001 batch_size=100,1000 shuffle=true,false)
case $MODE in
  full)  # the figures: every model, the whole grid, the presets as typed
    BUDGET=${BUDGET:-300} CAP=240 JOBS=4 BENCH=(--device cuda) TINY=() ;;
  first-pass)  # every step on the GPU at tiny sizes
    BUDGET=${BUDGET:-300} CAP=120 JOBS=4 TINY=(epochs=1 limit_batches=0.1)
    BENCH=(--device cuda --quick --models bn_cnn --batch-sizes 100) ;;
  quick)  # the same code path on the CPU, in about a minute (the test)
    BUDGET=${BUDGET:-600} CAP=120 JOBS=2 TINY=(device=cpu epochs=1 limit_batches=2)
    BENCH=(--device cpu --quick --models bn_cnn --batch-sizes 100)
    GRID=(lr=0.01,0.001 batch_size=1000 shuffle=true) ;;
esac
MIN_BEST=30  # seconds of budget the best preset needs to be worth starting

mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
OUT=${OUT:-$([[ $MODE == full ]] && echo "$REPO/BENCHMARKS.md" || echo "$WORK/BENCHMARKS.md")}
OUT=$(realpath -m "$OUT")
RUN=$WORK/run SITE=$WORK/site DATA=$WORK/data
rm -rf "$RUN"
mkdir -p "$RUN" "$SITE" "$DATA"
if [[ -n ${PYTHON:-} ]]; then PY=$PYTHON
elif [[ -x $REPO/.venv/bin/python ]]; then PY=$REPO/.venv/bin/python
else PY=python3; fi
HELPER=$REPO/scripts/gpu_figures.py
export PYTHONPATH="$REPO/src:$SITE${PYTHONPATH:+:$PYTHONPATH}" CNNSWEEP_DATA_DIR=$DATA
T0=$(date +%s)

"$PY" "$HELPER" machine --run "$RUN" --work "$WORK" --mode "$MODE" --budget "$BUDGET" \
  --carry "$CARRY"
echo "figures into $OUT; logs in $RUN"

FAILED=0 STOPPED=0 STEP_PID=""
# stopped (Ctrl-C, an outer timeout): stop the step too (timeout runs it in a process group of
# its own), record it, and end
trap 'STOPPED=1; [[ -z $STEP_PID ]] || kill -TERM "$STEP_PID" 2>/dev/null || true' INT TERM
run_step() {  # run_step NAME CAP [--partial-ok] -- COMMAND...: one step, timed as a whole process
  local name=$1 cap=$2 flags=() rc=0 start end
  shift 2
  while [[ $1 != -- ]]; do flags+=("$1"); shift; done
  shift
  mkdir -p "$RUN/$name"
  echo "== $name: $* (at most ${cap} s)"
  start=$(date +%s.%N)
  (cd "$RUN/$name" && exec timeout --kill-after=10 "$cap" "$@") >"$RUN/$name.log" 2>&1 &
  STEP_PID=$!
  wait "$STEP_PID" || rc=$?
  if ((STOPPED)); then wait "$STEP_PID" 2>/dev/null || true; rc=143; fi
  end=$(date +%s.%N) STEP_PID=""
  "$PY" "$HELPER" record --run "$RUN" --out "$OUT" --name "$name" --rc "$rc" --start "$start" \
    --end "$end" --cap "$cap" "${flags[@]}" -- "$@" || FAILED=1
  if ((STOPPED)); then echo "stopped: the figures so far are in $OUT" >&2; exit 143; fi
}

run_step setup 600 -- "$PY" "$HELPER" setup --site "$SITE" --wheels "$CARRY/wheels" \
  --data "$DATA" --data-src "$CARRY/fashion-mnist" /usr/share/datasets/fashion-mnist \
  "$REPO/data/FashionMNIST/raw"
if ((FAILED)); then echo "the set-up failed: see $RUN/setup.log" >&2; exit 1; fi

run_step grid "$CAP" -- "$PY" "$REPO/train.py" -m "${GRID[@]}" "${TINY[@]}"
run_step grid_jobs "$CAP" -- "$PY" "$REPO/train.py" -m "${GRID[@]}" hydra/launcher=joblib \
  "hydra.launcher.n_jobs=$JOBS" "${TINY[@]}"
run_step fast "$CAP" -- "$PY" "$REPO/train.py" experiment=fashion_mnist_fast \
  test_every_epoch=true "${TINY[@]}"
run_step bench "$((2 * CAP))" -- "$PY" "$REPO/scripts/bench.py" --root "$DATA" "${BENCH[@]}"

BEST=("$PY" "$REPO/train.py" experiment=fashion_mnist_best test_every_epoch=true "${TINY[@]}")
LEFT=$((BUDGET - ($(date +%s) - T0)))
if ((LEFT >= MIN_BEST)); then
  run_step best "$LEFT" --partial-ok -- "${BEST[@]}"
else
  "$PY" "$HELPER" record --run "$RUN" --out "$OUT" --name best \
    --skipped "skipped: the budget is spent (${LEFT} s of ${BUDGET} s left)" -- "${BEST[@]}"
fi

echo "done in $(($(date +%s) - T0)) s: figures in $OUT$( ((FAILED)) && echo ', some steps FAILED')"
exit "$FAILED"
