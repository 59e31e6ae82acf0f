#!/usr/bin/env bash
# Soak: `aullm serve` on an expressive live-paced source for SOAK_SECONDS (default 600), with
# jsonl, TCP, WebSocket and LSL sinks and a real reader on each, RSS sampled every 10 s.
#
# The source is a SynthME long video (12 s, micro- and macro-expressions all along) played through
# a paced template (clocksync: frames arrive at 200 fps as from a camera; ingest.live=yes, so a
# face path that falls behind would drop frames and count them). When the video ends, the source
# has gone away: serve reconnects after --max-backoff 1 s and plays it again, so the soak also
# exercises reconnection and model reloading about once every 15 s.
#
# Usage: scripts/soak.sh [OUT]   (needs a release build, the models and the .venv: `make soak`)
# Writes OUT/soak.json and OUT/rss.csv and prints: duration, connections, events, delivered per
# sink, drops, RSS first / last / max and the RSS slope over the second half.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-out/soak}
SECONDS_WANTED=${SOAK_SECONDS:-600}
BIN=${AULLM_BIN:-target/release/aullm}
PY=${PYTHON_BIN:-.venv/bin/python}
mkdir -p "$OUT/pipelines"
rm -f "$OUT"/events.jsonl "$OUT"/rss.csv "$OUT"/serve.log "$OUT"/clients.json

[ -f "$OUT/synth/videos/001_1.avi" ] ||
	"$BIN" synth "$OUT/synth" --preset bench --subjects 1 --clips 0 --long-videos 1 --seed 11 >/dev/null
cat >"$OUT/pipelines/paced.pipeline" <<'EOF'
# A video file played at its own frame rate, as a camera delivers frames.
# param location=
filesrc location="{location}" ! decodebin ! videoconvert ! clocksync
EOF

"$BIN" serve --template paced --param "location=$PWD/$OUT/synth/videos/001_1.avi" \
	--set "ingest.pipelines_dir=$OUT/pipelines" --set ingest.live=yes --max-backoff 1 \
	--sink "jsonl:$OUT/events.jsonl" --sink tcp:0 --sink ws:0 --sink lsl:aullm-soak \
	--summary "$OUT/summary.json" 2>"$OUT/serve.log" &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 300); do
	[ "$(grep -c '^listening:' "$OUT/serve.log" || true)" -ge 2 ] && break
	sleep 0.1
done
TCP=$(sed -n 's/^listening: tcp:.* on //p' "$OUT/serve.log")
WS=$(sed -n 's/^listening: ws:.* on //p' "$OUT/serve.log")
"$PY" scripts/soak_clients.py "$TCP" "ws://$WS/" aullm-soak "$OUT/clients.json" >"$OUT/clients.log" 2>&1 &
CLIENTS=$!
for _ in $(seq 900); do grep -q READY "$OUT/clients.log" && break; sleep 0.1; done

echo "t_s,rss_kb" >"$OUT/rss.csv"
START=$(date +%s)
while [ $(($(date +%s) - START)) -lt "$SECONDS_WANTED" ]; do
	echo "$(($(date +%s) - START)),$(awk '/^VmRSS/ {print $2}' /proc/$SERVE/status)" >>"$OUT/rss.csv"
	sleep 10
done
kill -TERM $SERVE
wait $SERVE || true
trap - EXIT
kill -TERM $CLIENTS
wait $CLIENTS || true

"$PY" - "$OUT" <<'EOF'
import csv, json, re, sys
out = sys.argv[1]
events = [json.loads(l)["seq"] for l in open(f"{out}/events.jsonl")]
clients = json.load(open(f"{out}/clients.json"))
log = open(f"{out}/serve.log").read()
# Every connection's summary line: "... dropped N (queue Q, gaps G, QoS S) ..." and clip drops.
frames_dropped = sum(int(x) for x in re.findall(r"frames at [\d.]+ fps \([\d.]+ frames/s processed\), dropped (\d+)", log))
clips_dropped = sum(int(x) for x in re.findall(r"clips dropped (\d+) \(queue full\)", log))
connections = len(re.findall(r"frames at [\d.]+ fps", log))
rss = [(int(r["t_s"]), int(r["rss_kb"])) for r in csv.DictReader(open(f"{out}/rss.csv"))]
half = [p for p in rss if p[0] >= rss[-1][0] / 2]
n = len(half)
mt = sum(t for t, _ in half) / n
mr = sum(r for _, r in half) / n
slope = sum((t - mt) * (r - mr) for t, r in half) / max(1e-9, sum((t - mt) ** 2 for t, _ in half))
want = list(range(len(events)))
res = {
    "seconds": rss[-1][0] + 10,
    "connections": connections,
    "events": len(events),
    "events_in_order": events == want,
    "delivered": {k: len(v) for k, v in clients.items()},
    "complete": {k: v == want for k, v in clients.items()},
    "frames_dropped": frames_dropped,
    "clips_dropped": clips_dropped,
    "rss_mb": {"first": rss[0][1] / 1024, "last": rss[-1][1] / 1024, "max": max(r for _, r in rss) / 1024},
    "rss_slope_kb_per_min_second_half": slope * 60,
}
json.dump(res, open(f"{out}/soak.json", "w"), indent=2)
print(json.dumps(res, indent=2))
EOF
