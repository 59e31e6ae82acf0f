#!/usr/bin/env bash
# Checks that two aullm binaries give byte-identical outputs: batch events.jsonl, frames.csv and
# report.html on the 8 SynthME bench videos and on the demo video, and bit-identical training
# checkpoints for a fixed seed. Used before and after a refactor that must not change behaviour:
#   scripts/same-outputs.sh OLD/aullm NEW/aullm [WORK_DIR]
# Exit status 0 when everything matches, 1 with the differing files listed otherwise.
set -euo pipefail
REF=$(realpath "$1")
NEW=$(realpath "$2")
WORK=${3:-out/same-outputs}
mkdir -p "$WORK"
cd "$WORK"

# Inputs, rendered once (the generator is deterministic per seed).
[ -d bench/videos ] || "$NEW" synth bench --preset bench --clips 0
[ -d demo/videos ] || "$NEW" synth demo --preset bench --subjects 1 --clips 0 --long-videos 1
[ -d train-set ] || "$NEW" synth train-set --preset ci

status=0
for side in ref new; do
    bin=$REF
    [ "$side" = new ] && bin=$NEW
    rm -rf "$side"
    mkdir -p "$side"
    "$bin" batch bench/videos --out "$side/bench" -j 2 --quiet
    "$bin" batch demo/videos --out "$side/demo" -j 1 --quiet
    "$bin" train --dataset casme2:train-set --out "$side/train" --epochs 1 --max-steps 3 \
        --set train.threads=1 >/dev/null
done

compared=0
while IFS= read -r f; do
    compared=$((compared + 1))
    if ! cmp -s "ref/$f" "new/$f"; then
        echo "DIFFERS: $f"
        status=1
    fi
done < <(cd ref && find bench demo -name events.jsonl -o -name frames.csv -o -name report.html -o -name index.csv | sort
         cd ref && find train -name '*.safetensors' | sort)
# Every file on one side exists on the other.
if ! diff <(cd ref && find bench demo train -type f -name '*.jsonl' -o -name '*.csv' -o -name '*.safetensors' | sort) \
          <(cd new && find bench demo train -type f -name '*.jsonl' -o -name '*.csv' -o -name '*.safetensors' | sort) >/dev/null; then
    echo "the two runs wrote different sets of files"
    status=1
fi
echo "compared $compared files: $([ $status = 0 ] && echo identical || echo DIFFERENT)"
exit $status
