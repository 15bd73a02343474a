#!/usr/bin/env bash
# A real PostgreSQL for the cluster tests: Debian's postgresql, run as the `postgres` user in a
# temporary data directory, listening on 127.0.0.1 only. Idempotent.
#
#   scripts/pg.sh start | stop | env
set -euo pipefail
cd "$(dirname "$0")/.."
PGDIR=${MIMI_PG_DIR:-$PWD/target/pg}
PORT=${MIMI_PG_PORT:-15432}
log() { printf '[pg] %s\n' "$*" >&2; }
bin() {
    local b
    b=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    echo "${b:-/usr/bin}"
}
install() {
    if [[ ! -x "$(bin)/initdb" ]]; then
        log "installing postgresql (Debian)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
}
as_pg() { if [[ $(id -u) == 0 ]]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
start() {
    install
    mkdir -p "$PGDIR"
    [[ $(id -u) == 0 ]] && chown postgres "$PGDIR"
    if [[ ! -f $PGDIR/data/PG_VERSION ]]; then
        as_pg "$(bin)/initdb -D '$PGDIR/data' -A trust -U postgres >/dev/null"
    fi
    if as_pg "$(bin)/pg_ctl -D '$PGDIR/data' status >/dev/null 2>&1"; then
        log "already running"
    else
        if ! as_pg "$(bin)/pg_ctl -D '$PGDIR/data' -l '$PGDIR/log' -w -o \"-p $PORT -c listen_addresses=127.0.0.1 -k '$PGDIR' -c max_connections=200 -c fsync=on\" start >/dev/null"; then
            # Say why (most often another server on the port: set MIMI_PG_PORT).
            log "postgresql did not start on 127.0.0.1:$PORT; its log ends with:"
            tail -5 "$PGDIR/log" >&2 || true
            exit 1
        fi
        log "postgresql ready on 127.0.0.1:$PORT"
    fi
}
stop() {
    if [[ -f $PGDIR/data/PG_VERSION ]]; then
        as_pg "$(bin)/pg_ctl -D '$PGDIR/data' -m fast stop >/dev/null 2>&1" || true
        log "postgresql stopped"
    fi
}
case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) echo "export MIMI_TEST_PG=postgres://postgres@127.0.0.1:$PORT/postgres" ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
