#!/usr/bin/env bash
# Train both release runs side by side for the same wall time (docs/report.md, "Training").
#   scripts/train_release.sh DATA VAL RUNS_DIR MINUTES
# DATA: training images (data/train.tar, a pack such as data/train64.zip, or shards 'data/train-*.zip');
# VAL: held-out images for the quick FD (its first EVAL_N by name). Both runs start together and
# stop after MINUTES of training wall time each (--max-minutes), logging to RUNS_DIR/<model>.log.
# Cadences (generator steps) can be set through the environment; the defaults were chosen for a
# GPU's step rate (they ran on an H100, docs/report.md) — on a CPU set e.g. GAN_EVAL=500 WGAN_EVAL=100.
# ARGS: extra arguments for both runs, e.g. ARGS="--precision fp32".
set -euo pipefail
DATA=${1:?DATA} VAL=${2:?VAL} RUNS=${3:-runs} MIN=${4:-120}
EVAL_N=${EVAL_N:-1000} THREADS=${THREADS:-4} SEED=${SEED:-0}
mkdir -p "$RUNS"
common=(--data "$DATA" --eval-real "$VAL" --eval-n "$EVAL_N" --epochs 500 --max-minutes "$MIN"
        --threads "$THREADS" --seed "$SEED" --keep-ckpts 2 ${ARGS:-})
python -m animegan.train --model gan --out "$RUNS/gan" "${common[@]}" \
  --eval-every "${GAN_EVAL:-3000}" --sample-every "${GAN_SAMPLE:-8000}" --ckpt-every "${GAN_CKPT:-20000}" \
  --log-every "${GAN_LOG:-50}" > "$RUNS/gan.log" 2>&1 &
gan=$!
python -m animegan.train --model wgan-gp --out "$RUNS/wgan-gp" "${common[@]}" \
  --eval-every "${WGAN_EVAL:-500}" --sample-every "${WGAN_SAMPLE:-1500}" --ckpt-every "${WGAN_CKPT:-4000}" \
  --log-every "${WGAN_LOG:-20}" > "$RUNS/wgan-gp.log" 2>&1 &
wgan=$!
trap 'kill -TERM $gan $wgan 2>/dev/null' INT TERM  # both write a checkpoint and stop cleanly
rc=0
wait $gan || rc=$?
wait $wgan || rc=$?
tail -n 3 "$RUNS/gan.log" "$RUNS/wgan-gp.log"
exit $rc
