#!/usr/bin/env bash
# The full-resolution versions of the bundled models, on one GPU: the supervised warm start, then
# la-vnet-sup and la-vnet-freq-bfa from it side by side (configs/fullres/: the recipe of the controlled
# comparison in configs/compare/ at 0.625 mm). Resumable: run it again to continue. Then score the
# last checkpoints with benchmarks/compare_report.py --runs RUNS.
#   bash scripts/train_fullres_gpu.sh [RUNS]      (default runs/fullres)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/fullres}
freqseg=.venv/bin/freqseg

train() {  # CONFIG OUT [ARGS...]: train, resuming a started run, skipping a finished one
    local config=$1 out=$2
    shift 2
    if [[ -f $out/last.safetensors ]]; then return 0; fi
    local resume=()
    if [[ -f $out/checkpoint.pt ]]; then resume=(--resume); fi
    "$freqseg" train "$config" --out "$out" --quiet "${resume[@]}" "$@"
}

train configs/fullres/la_warmstart.toml "$runs/warmstart"
for row in sup freq_bfa; do
    train "configs/fullres/la_$row.toml" "$runs/$row-s0" --init "$runs/warmstart/last.safetensors" --seed 0 &
done
wait
ls -l "$runs"/*/last.safetensors
