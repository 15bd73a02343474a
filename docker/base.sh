#!/usr/bin/env bash
# Makes the runtime base image `mimi-base:bookworm` without a registry: a minimal Debian
# bookworm from Debian's mirror (debootstrap --variant=minbase), trimmed, then `docker import`.
# Idempotent: does nothing when the image exists (FORCE=1 rebuilds it).
set -euo pipefail
IMAGE=${MIMI_BASE_IMAGE:-mimi-base:bookworm}
if [[ -z ${FORCE:-} ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi
command -v debootstrap >/dev/null || {
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
ROOT=$(mktemp -d /var/tmp/mimi-rootfs.XXXXXX)
trap 'rm -rf "$ROOT"' EXIT
echo "[docker] debootstrap bookworm (minbase) into $ROOT" >&2
debootstrap --variant=minbase --include=ca-certificates bookworm "$ROOT" http://deb.debian.org/debian >/dev/null
# Trim what a server never reads.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/usr/share/doc/* \
    "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/* "$ROOT"/var/log/*.log
find "$ROOT"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.UTF-8' -exec rm -rf {} + 2>/dev/null || true
tar -C "$ROOT" -c . | docker import - "$IMAGE" >/dev/null
echo "[docker] $IMAGE: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')" >&2
