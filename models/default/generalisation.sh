#!/usr/bin/env bash
# The generalisation report of a model: writes SynthME's three evaluation sets (if missing), scores
# the model on each with `aullm eval --model` (clips and long videos), and prints the table README
# quotes. None of these sets may train a model (`aullm train` refuses them); none was looked at to
# choose a recipe, a threshold or a spotting parameter.
#
#   crossfamily    the held-out mesh family on new identities from the training photos
#   crossidentity  the training families (blobs, muscles) on the held-out photos' people
#   heldout        the held-out family on the held-out people: the figure the issue's targets name
#
# usage: models/default/generalisation.sh DATA_DIR OUT_DIR [MODEL] [AULLM_BINARY]   (from the repository root)
set -euo pipefail
usage="usage: models/default/generalisation.sh DATA_DIR OUT_DIR [MODEL] [AULLM_BINARY]"
data=${1:?$usage}
out=${2:?$usage}
model=${3:-default}
aullm=${4:-target/release/aullm}
mkdir -p "$data" "$out"
[ -f "$data/heldout/synth_truth.json" ] ||
    "$aullm" synth "$data/heldout" --preset heldout --subjects 7 --long-videos 8
[ -f "$data/crossfamily/synth_truth.json" ] ||
    "$aullm" synth "$data/crossfamily" --preset heldout --faces photos --seed 3 --subjects 8 --long-videos 4
[ -f "$data/crossidentity/synth_truth.json" ] ||
    "$aullm" synth "$data/crossidentity" --preset general --faces photos:heldout --seed 4 --subjects 7 --long-videos 4
for set in crossfamily crossidentity heldout; do
    "$aullm" eval --model "$model" --dataset "synth:$data/$set" --out "$out/$set" --quiet
done
python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
f = lambda x: "n/a" if x is None else f"{x:.3f}"
def f1(c):
    d = 2 * c["tp"] + c["fp"] + c["fn"]
    return None if d == 0 else 2 * c["tp"] / d
print("| set | clips | AU macro-F1 over clips (pooled) | AU macro-F1 over matched intervals | spotting F1 (pooled / mean over videos) | micro-expressions | macro-expressions |")
print("|---|---|---|---|---|---|---|")
for name in ["crossfamily", "crossidentity", "heldout"]:
    r = json.load(open(os.path.join(out, name, "report.json")))["outcome"]
    c, v = r.get("clips") or {}, r.get("videos") or {}
    print(f"| {name} | {c.get('samples', 0)} | {f(c.get('macro_pooled_f1'))} | {f(v.get('au_macro_f1'))} | "
          f"{f(v.get('spotting_f1'))} / {f(v.get('spotting_f1_macro'))} | "
          f"{f(f1(v['micro_expressions'])) if v else 'n/a'} | {f(f1(v['macro_expressions'])) if v else 'n/a'} |")
PY
