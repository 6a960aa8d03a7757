#!/usr/bin/env bash
# `make test-cluster`: starts the cluster of deploy/compose.yaml, runs the cluster fault
# tests one at a time (integration-tests/tests/cluster.rs), prints their accounting lines,
# and removes the cluster again, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/cluster.sh up
trap 'scripts/cluster.sh down > /dev/null 2>&1 || true' EXIT
log=$(mktemp)
status=0
cargo test -p inferpush-integration-tests --test cluster -- --ignored --test-threads=1 --nocapture 2>&1 |
  tee "$log" || status=$?
echo "== accounting =="
grep -oE '(ACCOUNTING|FAILOVER|SSE across).*' "$log" | sort -u || true
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\ncluster: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
