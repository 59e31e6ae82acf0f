#!/usr/bin/env bash
# Checks that two aullm binaries give byte-identical outputs: batch events.jsonl, frames.csv and
# report.html on the 8 SynthME bench videos and on the demo video, and bit-identical training
# checkpoints (every tensor) for a fixed seed. Used before and after a refactor that must not change behaviour:
#   scripts/same-outputs.sh OLD/aullm NEW/aullm [WORK_DIR]
# Exit status 0 when everything matches, 1 with the differing files listed otherwise.
set -euo pipefail
REF=$(realpath "$1")
NEW=$(realpath "$2")
WORK=${3:-out/same-outputs}
mkdir -p "$WORK"
cd "$WORK"

# Inputs, rendered once by the reference binary (the generator is deterministic per seed).
[ -d bench/videos ] || "$REF" synth bench --preset bench --clips 0
[ -d demo/videos ] || "$REF" synth demo --preset bench --subjects 1 --clips 0 --long-videos 1
[ -d train-set ] || "$REF" synth train-set --preset ci

status=0
# The generator itself: the new binary renders the training set byte for byte.
rm -rf train-set-new
"$NEW" synth train-set-new --preset ci >/dev/null
if ! diff -r -q train-set train-set-new >/dev/null; then
    echo "DIFFERS: synth --preset ci renders other files"
    diff -r -q train-set train-set-new | head -5
    status=1
fi
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

# The outputs that must match: per-video events, frame rows, reports, the indexes, and every
# checkpoint tensor file of the training run.
outputs() {
    (cd "$1" && find bench demo \( -name events.jsonl -o -name frames.csv -o -name report.html \
        -o -name index.csv \) -type f && find train -name '*.safetensors' -type f) | sort
}

# Tensors of two safetensors files: names, dtypes, shapes and bytes (the header's metadata holds
# the epochs' wall time, which differs between any two runs).
same_tensors() {
    python3 - "$1" "$2" <<'PY'
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}
sys.exit(0 if tensors(sys.argv[1]) == tensors(sys.argv[2]) else 1)
PY
}

compared=0
while IFS= read -r f; do
    compared=$((compared + 1))
    if [[ $f == *.safetensors ]]; then
        if ! same_tensors "ref/$f" "new/$f"; then
            echo "DIFFERS: $f"
            status=1
        fi
    elif ! cmp -s "ref/$f" "new/$f"; then
        echo "DIFFERS: $f"
        status=1
    fi
done < <(outputs ref)
if ! diff <(outputs ref) <(outputs new) >/dev/null; then
    echo "the two runs wrote different sets of files"
    status=1
fi
echo "compared $compared files: $([ $status = 0 ] && echo identical || echo DIFFERENT)"
exit $status
