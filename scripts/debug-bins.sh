#!/usr/bin/env bash
# Makes sure target/debug/mimi and target/debug/mimi-conformance are built (for
# scripts/conformance-selftest.sh and docker/build-local.sh with PROFILE=debug).
# Under scripts/test (MIMI_TESTS_BUILT=1) its test build has just written both binaries; a
# plain `cargo build` would rebuild them for nothing, because without the dev-dependencies
# Cargo resolves other features (criterion's serde `alloc`, mimi-content's `proptest`) and so
# every crate above them differs.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -n ${MIMI_TESTS_BUILT:-} ]] || cargo build --locked -q -p mimi -p mimi-conformance
