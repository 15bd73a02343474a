#!/usr/bin/env bash
# The cluster in containers, with no registry: PostgreSQL built from the locally made Debian
# base (docker/postgres.Dockerfile), a.example as three node containers on it and b.example
# as its peer (docker/cluster.yaml). `mimi load` runs across both providers, addressing
# a.example at all three nodes, while one node (a1, ordering its third of the slots) is cut
# off the network (`docker network disconnect`): once its lease expires it must order nothing (it holds no
# slot; no split brain), the two others order every slot, and after it is healed it takes
# its share again; nothing accepted is lost, duplicated or reordered. Tears everything down,
# even on failure. Skips, saying so, when no Docker engine is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."

LOG_PREFIX=cluster WHAT="the cluster container test"
# shellcheck source=docker/lib.sh
source docker/lib.sh

export MIMI_IMAGE=${MIMI_IMAGE:-mimi:local}
export MIMI_PG_IMAGE=${MIMI_PG_IMAGE:-mimi-postgres:local}
PROJECT=mimi-cluster-$$
DC=("${COMPOSE[@]}" -p "$PROJECT" -f docker/cluster.yaml)
NET=${PROJECT}_mimi
cleanup() {
    local s=$?
    if ((s != 0)); then
        log "failed; the nodes said:"
        "${DC[@]}" logs --tail 30 a1 a2 a3 b >&2 2>&1 || true
    fi
    "${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf docker/cluster-fed
    exit $s
}
trap cleanup EXIT

if [[ -z ${MIMI_IMAGE_BUILT:-} ]]; then
    PROFILE=${MIMI_DOCKER_PROFILE:-debug} docker/build-local.sh
fi
docker/base.sh
docker build -q -f docker/postgres.Dockerfile -t "$MIMI_PG_IMAGE" docker >/dev/null
log "$MIMI_PG_IMAGE: $(docker image inspect -f '{{.Size}}' "$MIMI_PG_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
FAILOVER_MS=6000
MIMI_FAILOVER_MS=$FAILOVER_MS docker/cluster.sh
TOKEN=$(cat docker/cluster-fed/admin-token)

log "bringing PostgreSQL, a1-a3 and b up"
"${DC[@]}" up -d >/dev/null 2>&1
container() { "${DC[@]}" ps -q "$1"; }
healthy() {
    [[ $(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$(container "$1")") == healthy ]]
}
for _ in $(seq 180); do
    healthy a1 && healthy a2 && healthy a3 && healthy b && break
    sleep 0.5
done
for g in a1 a2 a3 b; do
    healthy "$g" || { log "$g is not healthy"; exit 1; }
done
# A node's view of the cluster, as JSON (the admin listener is inside the container, so this
# works for a partitioned node too).
view() {
    docker exec "$(container "$1")" mimi admin --config /etc/mimi/config.toml cluster
}
held() { view "$1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["held"]))'; }
# "ok" once the owners seen by $1 are all among the nodes $2 (comma-separated), each with its
# even share when $3 is "even".
owners_ok() {
    view "$1" | python3 -c '
import json, sys
s = json.load(sys.stdin); live = sys.argv[1].split(","); even = sys.argv[2] == "even"
o = s["owners"]
ok = all(x in live for x in o)
if ok and even:
    ok = all(o.count(n) == len(o) // len(live) for n in live)
print("ok" if ok else "no")' "$2" "$3"
}
for _ in $(seq 60); do
    [[ $(owners_ok a1 a1,a2,a3 even) == ok ]] && break
    sleep 0.5
done
[[ $(owners_ok a1 a1,a2,a3 even) == ok ]] || { view a1 >&2; log "the slots were never shared by a1-a3"; exit 1; }
log "a1, a2, a3 and b are healthy; every node orders 4 of the 12 slots"

log "mimi load across a.example (all three nodes) and b.example"
LOAD_OUT=$(mktemp)
docker exec "$(container tools)" mimi load --token "$TOKEN" \
    --gateway a.example=http://172.29.0.11:8080,http://172.29.0.12:8080,http://172.29.0.13:8080 \
    --gateway b.example=http://172.29.0.21:8080 \
    --rooms 6 --users 2 --messages 1500 --rate 100 --patience 120 >"$LOAD_OUT" 2>&1 &
LOAD=$!
sleep 5
log "cutting a1 off the network (PostgreSQL, the other nodes, b and the clients)"
docker network disconnect "$NET" "$(container a1)"
CUT=$(date +%s%N)
# Once its lease has expired it orders nothing; the others order everything.
for _ in $(seq 200); do
    [[ $(held a1) == 0 && $(owners_ok a2 a2,a3 any) == ok ]] && break
    sleep 0.1
done
TOOK=$((($(date +%s%N) - CUT) / 1000000))
[[ $(held a1) == 0 ]] || { view a1 >&2; log "a1 still orders slots it can no longer renew"; exit 1; }
[[ $(owners_ok a2 a2,a3 any) == ok ]] || { view a2 >&2; log "a2 and a3 did not take a1's slots"; exit 1; }
log "a1 orders nothing and a2/a3 order every slot, ${TOOK} ms after the cut (failover bound ${FAILOVER_MS} ms)"
((TOOK <= FAILOVER_MS + 2000)) || { log "beyond the bound"; exit 1; }
sleep 3
log "healing a1"
docker network connect --ip 172.29.0.11 "$NET" "$(container a1)"
for _ in $(seq 120); do
    [[ $(owners_ok a2 a1,a2,a3 even) == ok ]] && break
    sleep 0.5
done
[[ $(owners_ok a2 a1,a2,a3 even) == ok ]] || { view a2 >&2; log "a1 never took its share back"; exit 1; }
log "a1 is back and orders its share"
status=0
wait "$LOAD" || status=$?
REPORT=$(grep '^{' "$LOAD_OUT" | tail -1)
log "load: $REPORT"
((status == 0)) || { cat "$LOAD_OUT" >&2; log "mimi load found losses, duplicates or reordering"; exit 1; }
python3 - "$REPORT" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
assert r["lost"] == 0 and r["duplicates"] == 0 and r["out_of_order"] == 0 and r["unusable"] == 0, r
assert r["accepted"] == r["sent"] == 1500, r
assert r["delivered"] == 1500, r
PY
log "ok"
