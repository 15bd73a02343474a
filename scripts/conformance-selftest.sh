#!/usr/bin/env bash
# Runs mimi-conformance against our own gateway (`mimi run`) in both roles and over both
# transports: a development federation of target.example (the gateway under test) and
# suite.example (the suite's side), on loopback. Reports go to target/conformance/.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/debug-bins.sh
BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug
MIMI=$BIN/mimi
SUITE_BIN=$BIN/mimi-conformance
OUT=$PWD/target/conformance
DIR=$(mktemp -d)
rm -rf "$OUT" && mkdir -p "$OUT"

BASE=$(( 10000 + RANDOM % 20000 ))  # below the ephemeral range (32768+)
"$MIMI" init --domain target.example --domain suite.example --out "$DIR" --base-port "$BASE" >/dev/null 2>&1
TARGET_PORT=$BASE
CLIENT_API=$((BASE + 2))
SUITE_PORT=$((BASE + 10))

(cd "$DIR/target.example" && exec "$MIMI" run --config config.toml) >"$DIR/target.out" 2>"$DIR/target.err" &
PID=$!
cleanup() {
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q '^listening' "$DIR/target.out" 2>/dev/null && break; sleep 0.1; done
grep -q '^listening' "$DIR/target.out" || { cat "$DIR/target.err" >&2; echo "the target gateway did not start" >&2; exit 1; }

status=0
# ROLES and SUITE narrow the run (scripts/security-mutations.py runs one attack at a time).
for role in ${ROLES:-hub follower security}; do
    for transport in h3 https; do
        # The attacks do not depend on the transport: one pass over HTTP/3.
        [[ $role == security && $transport == https ]] && continue
        echo "==> mimi-conformance run --role $role --transport $transport"
        "$SUITE_BIN" run --role "$role" --transport "$transport" \
            --target "https://127.0.0.1:$TARGET_PORT" --target-domain target.example \
            --our-domain suite.example --cert "$DIR/suite.example/cert.pem" --key "$DIR/suite.example/key.pem" \
            --ca "$DIR/ca.pem" --listen "127.0.0.1:$SUITE_PORT" --hook "http://127.0.0.1:$CLIENT_API" \
            ${SUITE:+--suite "$SUITE"} \
            --junit "$OUT/$role-$transport.xml" --json "$OUT/$role-$transport.json" || status=1
    done
done
exit $status
