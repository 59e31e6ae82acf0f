#!/usr/bin/env bash
# LOSO evaluation of models/default's recipe on SynthME: for every held-out subject, stage 1 (MLP head,
# 50 epochs), stage 2 (the full model from that fold's stage-1 front-end) and the MLP-head ablation on
# stage 2's schedule. JOBS workers (default: one per core) each take every JOBS-th fold through all
# three stages, single-threaded: a second thread makes a training step only ~6% faster, so folds side
# by side nearly double the throughput. Reports are rewritten after every fold (labelled partial until
# all folds are done); stop at any time, and run the same command again to continue.
#
# usage: models/default/loso.sh SYNTH_DIR RUNS_DIR [AULLM_BINARY] [JOBS]   (from the repository root)
set -euo pipefail
usage="usage: models/default/loso.sh SYNTH_DIR RUNS_DIR [AULLM_BINARY] [JOBS]"
data=${1:?$usage}
runs=${2:?$usage}
aullm=${3:-target/release/aullm}
jobs=${4:-$(nproc)}
mapfile -t subjects < <(find "$data/CASME2_RAW_selected" -mindepth 1 -maxdepth 1 -type d -name 'sub*' -printf '%f\n' | LC_ALL=C sort)
folds=${#subjects[@]}
if [ "$folds" -eq 0 ]; then
    echo "$data: no subjects in CASME2_RAW_selected/ (make one with: aullm synth $data --preset general --clips 30 --long-videos 0)" >&2
    exit 1
fi
mkdir -p "$runs"
stage1=(--config models/default/train-stage1.toml)
stage2=(--config models/default/train.toml --set "train.init_frontend=$runs/stage1")
common=(--dataset "synth:$data" --protocol loso --resume)
if [ "$jobs" -gt 1 ]; then
    export RAYON_NUM_THREADS=1
fi

shard_done() { # SHARD: every fold of the shard has finished its last stage (so a rerun skips it)
    # Fold folders are named like eval's (fold-casme2_subNN); were they not, the pass count below
    # still bounds the loop.
    local i
    for ((i = $1; i < folds; i += jobs)); do
        [ -f "$runs/mlp/fold-casme2_${subjects[i]}/checkpoint/thresholds.json" ] || return 1
    done
}

worker() { # SHARD
    local part=(--shard "$1/$jobs" --max-folds 1) pass
    for ((pass = 0; pass < (folds + jobs - 1) / jobs; pass++)); do
        shard_done "$1" && break
        "$aullm" "${stage1[@]}" eval "${common[@]}" --out "$runs/stage1" "${part[@]}"
        "$aullm" "${stage2[@]}" eval "${common[@]}" --out "$runs/full" "${part[@]}"
        "$aullm" "${stage2[@]}" eval "${common[@]}" --out "$runs/mlp" --ablation mlp_head "${part[@]}"
    done >"$runs/worker-$1.md" 2>"$runs/worker-$1.log"
}

pids=()
for ((j = 0; j < jobs; j++)); do
    worker "$j" &
    pids+=($!)
done
failed=0
for p in "${pids[@]}"; do
    wait "$p" || failed=1
done
if [ "$failed" -ne 0 ]; then
    echo "a worker failed: see $runs/worker-*.log" >&2
    exit 1
fi
# Every fold is finished: write the three complete reports (no training).
"$aullm" "${stage1[@]}" eval "${common[@]}" --out "$runs/stage1" --max-folds 0 >"$runs/stage1.md"
"$aullm" "${stage2[@]}" eval "${common[@]}" --out "$runs/full" --max-folds 0 >"$runs/full.md"
"$aullm" "${stage2[@]}" eval "${common[@]}" --out "$runs/mlp" --ablation mlp_head --max-folds 0 >"$runs/mlp.md"
grep -H "macro-F1" "$runs"/{stage1,full,mlp}/report.md
