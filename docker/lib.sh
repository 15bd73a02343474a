# Sourced by docker/test.sh and docker/cluster-test.sh: their log prefix, and the Docker and
# Compose detection (a machine without either skips the container tests, saying so).
# Set LOG_PREFIX and WHAT before sourcing; defines log() and COMPOSE, or exits 0.

log() { printf '[%s] %s\n' "$LOG_PREFIX" "$*" >&2; }

if ! docker info >/dev/null 2>&1; then
    log "no Docker engine reachable: skipping $WHAT"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
else
    log "Docker Compose is not installed: skipping $WHAT"
    exit 0
fi
