#!/bin/bash
# Event latency (offset-frame capture -> event published) of `aullm run` on recorded videos paced
# at their frame rate as a live source (GStreamer clocksync), pooled over every event.
#   scripts/latency.sh AULLM VIDEO... [-- --set KEY=VALUE ...]
# Prints: events, median, p99 and max latency in ms. README "Performance" quotes it on
# videos/00{1..4}_1.avi of `aullm synth DIR --preset bench --seed 1 --subjects 4 --clips 0 --long-videos 4`.
set -euo pipefail
aullm=$1; shift
videos=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do videos+=("$1"); shift; done
[ $# -gt 0 ] && shift
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
i=0
for v in "${videos[@]}"; do
  i=$((i + 1))
  "$aullm" run "gst:filesrc location=$v ! decodebin ! videoconvert ! clocksync" \
    --set ingest.live=yes --fps 200 --sink "jsonl:$out/$i.jsonl" "$@" > /dev/null 2>&1
done
python3 - "$out" <<'PY'
import glob, json, statistics, sys
v = sorted(json.loads(l)["latency_ms"] for f in glob.glob(sys.argv[1] + "/*.jsonl") for l in open(f))
if not v:
    sys.exit("no events")
p99 = v[min(len(v) - 1, round(0.99 * (len(v) - 1)))]
print(f"events {len(v)}  median {statistics.median(v):.1f} ms  p99 {p99:.1f} ms  max {v[-1]:.1f} ms")
PY
