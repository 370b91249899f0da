#!/usr/bin/env bash
# The one release command, CPU or CUDA: split, smoke test, models × seeds, selection on the select
# split, exports, scoring on the test split, figures and model cards. Every flag: --help.
#   scripts/release.sh --data anime-faces-96.tar --out releases/r1 --seeds 0,1,2 --epochs 3 --deadline 150
exec python "$(dirname "$0")/release.py" "$@"
