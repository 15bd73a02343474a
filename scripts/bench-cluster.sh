#!/usr/bin/env bash
# Throughput of one provider on 1, 2 and 3 cluster nodes (PostgreSQL, scripts/pg.sh) against
# the same provider on one gateway with embedded redb, in the same run, with `mimi load` at
# full speed (rate 0): rooms hosted by a.example, their users on a.example, every delivery
# checked. Prints one JSON line per setup and the ratios. Release build.
#
#   scripts/bench-cluster.sh [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${1:-3000}
cargo build --release -q -p mimi
MIMI=$PWD/target/release/mimi
scripts/pg.sh start
eval "$(scripts/pg.sh env)"
DIR=$(mktemp -d /tmp/mimi-bench-cluster.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
"$MIMI" init --domain a.example --out "$DIR" --base-port 24400 >/dev/null 2>&1
BASE=$DIR/a.example/config.toml
psql_() { "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/psql" -q "$MIMI_TEST_PG" -c "$1" >/dev/null; }
# node I of a cluster on database DB: ports 24500+10I (federation), +1 admin, +2 client API
node_config() {
    local i=$1 db=$2 p=$((24500 + 10 * $1))
    sed -e "s/^quic = \"127.0.0.1:.*/quic = \"127.0.0.1:$p\"/" \
        -e "s/^https = \"127.0.0.1:.*/https = \"127.0.0.1:$p\"/" \
        -e "s/^admin = .*/admin = \"127.0.0.1:$((p + 1))\"/" \
        -e "s/^client_api = .*/client_api = \"127.0.0.1:$((p + 2))\"/" \
        -e "s|^\[storage\]|[storage]\nbackend = \"postgres\"\nurl = \"${MIMI_TEST_PG%/*}/$db\"|" "$BASE"
    printf '\n[client_api]\nadmin_token = "bench-admin-token-0123456789"\n\n[cluster]\nnode = "n%s"\n' "$i"
}
start() { # config
    RUST_LOG=error "$MIMI" run --config "$1" >/dev/null 2>&1 &
    PIDS+=($!)
}
load() { # gateway spec
    "$MIMI" load --gateway "$1" --rooms 12 --users 2 --messages "$MESSAGES" --rate 0 --in-flight 32 --patience 60 2>/dev/null | grep '^{'
}
wait_api() { # port
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

start "$BASE"
wait_api 24402
R=$(load a.example=http://127.0.0.1:24402)
echo "{\"setup\":\"redb, one gateway\",\"report\":$R}"
BASELINE=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["accepted_per_s"])' "$R")
kill "${PIDS[@]}"; wait 2>/dev/null || true; PIDS=()

for n in 1 2 3; do
    db=mimi_bench_${n}_$$
    psql_ "DROP DATABASE IF EXISTS $db WITH (FORCE)"
    psql_ "CREATE DATABASE $db"
    urls=()
    for i in $(seq 0 $((n - 1))); do
        node_config "$i" "$db" >"$DIR/a.example/node$i.toml"
        start "$DIR/a.example/node$i.toml"
        wait_api $((24502 + 10 * i))
        urls+=("http://127.0.0.1:$((24502 + 10 * i))")
    done
    sleep $((n > 1 ? 3 : 1)) # the slots spread over the nodes
    spec=$(IFS=,; echo "a.example=${urls[*]}")
    R=$(load "$spec")
    per_s=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["accepted_per_s"])' "$R")
    ratio=$(python3 -c "print(round($per_s / $BASELINE, 2))")
    echo "{\"setup\":\"postgres, $n node(s)\",\"ratio_to_redb\":$ratio,\"report\":$R}"
    kill "${PIDS[@]}"; wait 2>/dev/null || true; PIDS=()
    psql_ "DROP DATABASE IF EXISTS $db WITH (FORCE)"
done
