#!/usr/bin/env bash
# Soak: five gateways (release build) on loopback, `mimi load` with many rooms for a while at
# a steady rate, each gateway's RSS sampled every 10 s. Prints the load report and one JSON
# line per gateway: RSS after warm-up, at the end, and the growth. Not part of the test
# command (it takes minutes); RELIABILITY.md records its figures.
#
#   scripts/soak.sh [ROOMS] [MESSAGES] [RATE]     (default 1000 rooms, 30000 messages, 50/s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOMS=${1:-1000}
MESSAGES=${2:-30000}
RATE=${3:-50}
cargo build --release --locked -q -p mimi
MIMI=$PWD/target/release/mimi
DIR=$(mktemp -d)
BASE=$((20000 + RANDOM % 5000))
DOMAINS=(a.example b.example c.example d.example e.example)
args=()
for d in "${DOMAINS[@]}"; do args+=(--domain "$d"); done
"$MIMI" init "${args[@]}" --out "$DIR" --base-port "$BASE" >/dev/null 2>&1
# Every simulated client long-polls from this one address (about 600 per gateway with the
# defaults): lift the per-address and total local connection caps (256 and 1024 by default,
# sized for clients spread over many addresses).
for d in "${DOMAINS[@]}"; do
    printf '\n[limits]\nlocal_connections = 8192\nlocal_connections_per_address = 8192\n' >>"$DIR/$d/config.toml"
done
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
for d in "${DOMAINS[@]}"; do
    (cd "$DIR/$d" && exec "$MIMI" run --config config.toml >out.log 2>err.log) &
    PIDS+=($!)
done
for d in "${DOMAINS[@]}"; do
    for _ in $(seq 100); do grep -q '^listening' "$DIR/$d/out.log" 2>/dev/null && break; sleep 0.1; done
done
SAMPLES=$DIR/rss.csv
(
    start=$SECONDS
    while true; do
        for i in "${!PIDS[@]}"; do
            kb=$(awk '/VmRSS/ {print $2}' "/proc/${PIDS[$i]}/status" 2>/dev/null || echo 0)
            echo "$((SECONDS - start)),${DOMAINS[$i]},$kb"
        done
        sleep 10
    done
) >"$SAMPLES" &
SAMPLER=$!
START=$SECONDS
"$MIMI" load --dir "$DIR" --rooms "$ROOMS" --users 3 --messages "$MESSAGES" --rate "$RATE" --patience 300 \
    | tee "$DIR/report.json"
ELAPSED=$((SECONDS - START))
kill "$SAMPLER" 2>/dev/null || true
python3 - "$SAMPLES" "$ELAPSED" <<'PY'
import csv, json, sys
rows = list(csv.reader(open(sys.argv[1])))
elapsed = int(sys.argv[2])
by = {}
for t, d, kb in rows:
    by.setdefault(d, []).append((int(t), int(kb)))
for d, s in sorted(by.items()):
    s = [x for x in s if x[1] > 0]
    # Warm-up: the first 30% of the run (rooms created, caches filled).
    warm = [kb for t, kb in s if t >= 0.3 * elapsed] or [kb for _, kb in s]
    first, last = warm[0], warm[-1]
    print(json.dumps({"gateway": d, "rss_after_warmup_mb": round(first / 1024, 1),
                      "rss_end_mb": round(last / 1024, 1), "peak_mb": round(max(kb for _, kb in s) / 1024, 1),
                      "growth_pct": round(100 * (last - first) / first, 1), "seconds": elapsed}))
PY
