#!/usr/bin/env bash
# Runs every test binary of the workspace (built once, shared) and closes with one
# summary line over all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "\nsummary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
