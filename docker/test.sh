#!/usr/bin/env bash
# The compose federation under test, with no registry: builds the images (docker/build-local.sh),
# brings three providers up (docker/compose.yaml), runs the conformance suite from one
# container against another, then `mimi load` across all three while a follower is cut off
# the network and healed (its backlog must drain in order) and the hub is killed and
# restarted: nothing accepted may be lost, duplicated or reordered. Tears everything down,
# even on failure. Skips, saying so, when no Docker engine is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

LOG_PREFIX=docker WHAT="the container tests"
# shellcheck source=docker/lib.sh
source docker/lib.sh

export MIMI_IMAGE=${MIMI_IMAGE:-mimi:local}
PROJECT=mimi-test-$$
DC=("${COMPOSE[@]}" -p "$PROJECT" -f docker/compose.yaml --profile tools)
NET=${PROJECT}_mimi
cleanup() {
    local s=$?
    if ((s != 0)); then
        log "failed; the gateways said:"
        "${DC[@]}" logs --tail 30 a b c >&2 2>&1 || true
    fi
    "${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf docker/fed
    exit $s
}
trap cleanup EXIT

PROFILE=${MIMI_DOCKER_PROFILE:-debug} docker/build-local.sh
docker/federation.sh
TOKEN=$(cat docker/fed/admin-token)

log "bringing the federation up"
"${DC[@]}" up -d a b c tools >/dev/null 2>&1
container() { "${DC[@]}" ps -q "$1"; }
healthy() {
    [[ $(docker inspect -f '{{.State.Health.Status}}' "$(container "$1")") == healthy ]]
}
for _ in $(seq 120); do
    healthy a && healthy b && healthy c && break
    sleep 0.5
done
for g in a b c; do
    healthy "$g" || { log "$g is not healthy"; exit 1; }
done
log "a, b and c are healthy"
tools() { docker exec "$(container tools)" "$@"; }

log "conformance: the suite's container against a.example (hub role, HTTP/3)"
tools mimi-conformance run --role hub --transport h3 \
    --target https://172.28.0.11:4433 --target-domain a.example \
    --our-domain suite.example --cert /etc/mimi-suite/cert.pem --key /etc/mimi-suite/key.pem \
    --ca /etc/mimi-suite/ca.pem --listen 172.28.0.20:4433 \
    --hook http://172.28.0.11:8080 --hook-token "$TOKEN" >&2

log "mimi load across a, b and c; c is cut off and healed, a is killed and restarted"
LOAD_OUT=$(mktemp)
tools mimi load --token "$TOKEN" \
    --gateway a.example=http://172.28.0.11:8080 \
    --gateway b.example=http://172.28.0.12:8080 \
    --gateway c.example=http://172.28.0.13:8080 \
    --rooms 6 --users 3 --messages 3000 --rate 150 --patience 120 >"$LOAD_OUT" 2>&1 &
LOAD=$!
sleep 6
log "cutting c off the network"
docker network disconnect "$NET" "$(container c)"
sleep 5
log "healing c"
docker network connect --ip 172.28.0.13 "$NET" "$(container c)"
sleep 3
log "killing a (SIGKILL) and restarting it"
docker kill "$(container a)" >/dev/null
sleep 1
docker start "$(container a)" >/dev/null
status=0
wait "$LOAD" || status=$?
REPORT=$(grep '^{' "$LOAD_OUT" | tail -1)
log "load: $REPORT"
((status == 0)) || { cat "$LOAD_OUT" >&2; log "mimi load found losses, duplicates or reordering"; exit 1; }
python3 - "$REPORT" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["lost"] == 0 and r["duplicates"] == 0 and r["out_of_order"] == 0, r
assert r["accepted"] == r["sent"] == 3000, r
assert r["delivered"] == 6000, r
PY
log "the image: $(docker image inspect -f '{{.Size}}' "$MIMI_IMAGE" | awk '{printf "%.0f MB", $1/1e6}') ($MIMI_IMAGE)"
log "ok"
