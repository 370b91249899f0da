#!/usr/bin/env bash
# The release pipeline of docs/report.md, after the two training runs (see the report for them):
# export the best generators, evaluate, write metrics/model cards and draw every figure.
#   scripts/release.sh RUNS_DIR      (RUNS_DIR holds gan/ and wgan-gp/; default runs)
# data/ holds the three-way split, made before training with
#   python -m animegan.data split anime-faces-96.tar --select 1000 --test 2000 --out data/
# select.tar chooses each run's best export (the quick FD); test.tar is only ever evaluated on.
# MACHINE: what the runs trained on, for the model cards (default: the runs' device).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs}
N=${N:-1000}

for m in gan wgan-gp; do
  python scripts/release.py fd-curve "$RUNS/$m" --real data/select.tar --n 1000   # FD of checkpoints before --eval-every
  python -m animegan.export "$RUNS/$m" --best --to "checkpoints/$m"
done
python scripts/release.py random-generator --out reports/random-init
python -m eval.fid --ckpt checkpoints/gan --ckpt checkpoints/wgan-gp --ckpt reports/random-init \
  --real data/test.tar --train data/train.tar --n "$N" --threads "${THREADS:-1}" --out reports/release
python scripts/release.py publish-metrics reports/release/report.json --to checkpoints
for m in gan wgan-gp; do
  python scripts/release.py model-card "checkpoints/$m" --run "$RUNS/$m" --machine "${MACHINE:-}"
done
python scripts/release.py figures --run "$RUNS/gan" --run "$RUNS/wgan-gp" \
  --ckpt checkpoints/gan --ckpt checkpoints/wgan-gp --out docs/figures --machine "${MACHINE:-}"
mkdir -p docs/figures/eval
# Only pictures without data-set images are committed: the NDB-bin, memorisation and real-vs-real
# pictures show data-set images, which stay in reports/release/ (never in the repository).
cp reports/release/report.json docs/figures/eval/
for m in gan wgan-gp random-init; do
  cp "reports/release/samples_$m.png" "reports/release/closest_pairs_$m.png" \
    "reports/release/nn_distances_$m.png" docs/figures/eval/
done
