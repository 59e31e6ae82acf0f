#!/usr/bin/env bash
# LOSO evaluation of models/default's recipe, one subject at a time: stage 1 (MLP head, 150 epochs),
# stage 2 (the full model from that fold's stage-1 front-end) and the MLP-head ablation on stage 2's
# schedule. Every pass trains one more fold of each and rewrites the three reports (labelled partial
# until all folds are done), so the run can be stopped at any time and continues where it stopped.
#
# usage: models/default/loso.sh SYNTH_DIR RUNS_DIR [AULLM_BINARY]   (from the repository root)
set -euo pipefail
data=${1:?usage: models/default/loso.sh SYNTH_DIR RUNS_DIR [AULLM_BINARY]}
runs=${2:?usage: models/default/loso.sh SYNTH_DIR RUNS_DIR [AULLM_BINARY]}
aullm=${3:-target/release/aullm}
mkdir -p "$runs"
stage() { # NAME CONFIG [ARGS...]
    local name=$1 cfg=$2
    shift 2
    "$aullm" --config "models/default/$cfg" "$@" eval --dataset "synth:$data" --protocol loso \
        --out "$runs/$name" --resume --max-folds 1 >"$runs/$name.md"
}
partial() { grep -q "Partial report" "$runs/$1/report.md"; }
while true; do
    stage stage1 train-stage1.toml
    stage full train.toml --set "train.init_frontend=$runs/stage1"
    stage mlp train.toml --set "train.init_frontend=$runs/stage1" --ablation mlp_head
    partial stage1 || partial full || partial mlp || break
done
grep -h "macro-F1" "$runs"/{stage1,full,mlp}/report.md
