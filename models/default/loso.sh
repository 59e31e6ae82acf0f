#!/usr/bin/env bash
# LOSO evaluation of models/default's recipe on SynthME: for every held-out subject, stage 1 (MLP head,
# 50 epochs), stage 2 (the full model from that fold's stage-1 front-end) and the MLP-head ablation on
# stage 2's schedule. JOBS workers (default: one per core) each take every JOBS-th fold through all
# three stages, single-threaded: a second thread makes a training step only ~6% faster, so folds side
# by side nearly double the throughput. Reports are rewritten after every fold (labelled partial until
# all folds are done); stop at any time, and run the same command again to continue.
#
# Every finished fold leaves RUNS_DIR/STAGE/fold-*/result.json (its thresholds and held-out
# predictions, bound to the configuration and clips). The script copies these and the reports to
# RESULTS_DIR (default models/default/report/loso, kept in git) after every fold, with trained-by.txt
# beside each new result (commit, binary SHA-256, cores, start time), and copies them
# back before it starts, so the protocol continues on another machine without the checkpoints;
# `aullm eval --resume` refuses a file written for other clips or another configuration.
#
# usage: models/default/loso.sh SYNTH_DIR RUNS_DIR [AULLM_BINARY] [JOBS]   (from the repository root)
#        LOSO_RESULTS=DIR to keep the results elsewhere
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
results=${LOSO_RESULTS:-models/default/report/loso}
stages=(stage1 full mlp)
mkdir -p "$runs"/{stage1,full,mlp}
# Seed this run with the kept results (a file already here is newer: keep it).
for st in "${stages[@]}"; do
    for f in "$results/$st"/fold-*/result.json; do
        [ -f "$f" ] || continue
        d="$runs/$st/$(basename "$(dirname "$f")")"
        mkdir -p "$d"
        [ -f "$d/result.json" ] || cp "$f" "$d/result.json"
    done
done

finished() { # STAGE FOLD_FOLDER_NAME
    [ -f "$runs/$1/$2/result.json" ] || [ -f "$runs/$1/$2/checkpoint/thresholds.json" ]
}

# Stage 2 and the ablation start from their fold's stage-1 checkpoint: where it is gone (a kept
# result only) and either is unfinished, stage 1 of that fold is trained again.
for d in "$runs"/stage1/fold-*/; do
    [ -d "$d" ] || continue
    f=$(basename "$d")
    if ! { finished full "$f" && finished mlp "$f"; } && [ ! -f "$d/checkpoint/thresholds.json" ]; then
        rm -f "$d/result.json"
    fi
done

# What trained the folds of this run, written beside each result it keeps (a LOSO spans machines).
dirty=$(git diff --quiet HEAD 2>/dev/null || echo " with uncommitted changes")
provenance="commit $(git rev-parse HEAD 2>/dev/null || echo unknown)$dirty
binary $aullm sha256 $(sha256sum "$aullm" | cut -d' ' -f1)
$(nproc) cores, started $(date -u +%Y-%m-%dT%H:%MZ)"

keep() { # copies the finished folds' results and the reports to $results (atomically: workers share it)
    local st f d
    for st in "${stages[@]}"; do
        mkdir -p "$results/$st"
        for f in "$runs/$st"/fold-*/result.json; do
            [ -f "$f" ] || continue
            d="$results/$st/$(basename "$(dirname "$f")")"
            mkdir -p "$d"
            if ! cmp -s "$f" "$d/result.json"; then
                cp "$f" "$d/result.json.$$" && mv "$d/result.json.$$" "$d/result.json"
                printf '%s\n' "$provenance" >"$d/trained-by.txt"
            fi
        done
        if [ -f "$runs/$st/report.md" ]; then
            cp "$runs/$st/report.md" "$results/$st/report.md.$$" && mv "$results/$st/report.md.$$" "$results/$st/report.md"
        fi
    done
}

stage1=(--config models/default/train-stage1.toml)
stage2=(--config models/default/train.toml --set "train.init_frontend=$runs/stage1")
common=(--dataset "synth:$data" --protocol loso --resume)
if [ "$jobs" -gt 1 ]; then
    export RAYON_NUM_THREADS=1
fi

worker() { # SHARD
    local part=(--shard "$1/$jobs" --max-folds 1) pass before
    for ((pass = 0; pass < (folds + jobs - 1) / jobs; pass++)); do
        before=$(find "$runs/mlp" -name result.json | wc -l)
        "$aullm" "${stage1[@]}" eval "${common[@]}" --out "$runs/stage1" "${part[@]}"
        "$aullm" "${stage2[@]}" eval "${common[@]}" --out "$runs/full" "${part[@]}"
        "$aullm" "${stage2[@]}" eval "${common[@]}" --out "$runs/mlp" --ablation mlp_head "${part[@]}"
        keep
        # A pass that finished no fold (not even another worker's) means this shard is done.
        [ "$(find "$runs/mlp" -name result.json | wc -l)" -gt "$before" ] || break
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
keep
grep -H "macro-F1" "$runs"/{stage1,full,mlp}/report.md
