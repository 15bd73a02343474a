#!/usr/bin/env bash
# Builds mimi:local without a registry: the base from Debian's mirror (docker/base.sh), the
# binaries on the host (release, stripped), the runtime stage of docker/Dockerfile around them.
set -euo pipefail
cd "$(dirname "$0")/.."
docker/base.sh
# PROFILE=debug reuses the test command's debug build (bigger, slower; enough for docker/test.sh).
PROFILE=${PROFILE:-release}
if [[ $PROFILE == release ]]; then
    cargo build --release --locked -q -p mimi -p mimi-conformance
else
    scripts/debug-bins.sh
fi
CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
mkdir -p "$CTX/bin"
install -m 0755 "target/$PROFILE/mimi" "target/$PROFILE/mimi-conformance" "$CTX/bin/"
strip "$CTX/bin/"*
docker build -q -f docker/local.Dockerfile -t "${MIMI_IMAGE:-mimi:local}" "$CTX" >/dev/null
echo "[docker] ${MIMI_IMAGE:-mimi:local}: $(docker image inspect -f '{{.Size}}' "${MIMI_IMAGE:-mimi:local}" | awk '{printf "%.0f MB", $1/1e6}')" >&2
