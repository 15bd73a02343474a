#!/usr/bin/env bash
# Runs fuzz targets for a while each, seeded from the kept corpus and the adapters' sample
# payloads, then minimizes what was found back into fuzz/corpus/<target> (kept in git, so the
# next run starts where this one stopped). A crash stops the script with the input under
# fuzz/artifacts/<target>/: fix it, then copy the input to fuzz/regressions/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   (defaults: 600 s; the adapter and head targets)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly-capable compiler (stable with
# RUSTC_BOOTSTRAP=1 is enough). Not part of scripts/test, which only builds the targets.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1
SECONDS_EACH=${1:-600}
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(adapters_matrix_event adapters_xmpp_stanza adapters_xmpp_stream adapters_wire federation_head)
SAMPLES=provider-adapters/tests/samples

seed() {  # seed TARGET DIR: sample payloads the target can start from
    case $1 in
        adapters_matrix_event) cp "$SAMPLES"/matrix/*.json "$2"/ ;;
        adapters_xmpp_stanza | adapters_xmpp_stream) cp "$SAMPLES"/xmpp/*.xml "$2"/ ;;
        adapters_wire) cp "$SAMPLES"/wire/*.bin "$2"/ ;;
    esac
    if [[ -d fuzz/regressions/$1 ]]; then cp fuzz/regressions/"$1"/* "$2"/; fi
}

for t in "${TARGETS[@]}"; do
    work=$(mktemp -d)
    mkdir -p "fuzz/corpus/$t"
    cp -r "fuzz/corpus/$t/." "$work/" 2>/dev/null || true
    seed "$t" "$work"
    echo "[fuzz] $t: ${SECONDS_EACH}s from $(find "$work" -type f | wc -l) inputs" >&2
    cargo fuzz run "$t" "$work" -- -max_total_time="$SECONDS_EACH" -print_final_stats=1 2>&1 |
        grep -E '^(stat::number_of_executed_units|stat::peak_rss|Done|==|SUMMARY|.*panicked)' >&2
    # Minimize in place (only inputs that add coverage stay), then keep that.
    cargo fuzz cmin "$t" "$work" >/dev/null 2>&1
    rm -rf "fuzz/corpus/$t" && mkdir -p "fuzz/corpus/$t"
    cp "$work"/* "fuzz/corpus/$t/"
    echo "[fuzz] $t: corpus kept: $(ls "fuzz/corpus/$t" | wc -l) inputs, $(du -sh "fuzz/corpus/$t" | cut -f1)" >&2
    rm -rf "$work"
done
