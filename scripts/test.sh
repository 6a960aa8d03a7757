#!/usr/bin/env bash
# Runs every test binary of the workspace (built once, shared) and closes with one
# summary line over all of them. For the container mode it serves Podman's Docker API on
# a private socket for the length of the run (testcontainers reaches it by DOCKER_HOST).
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
socket_dir=$(mktemp -d)
podman_pid=
# Every container the container mode starts carries this run's label (see
# integration-tests/src/containers.rs); whatever is left of them goes on exit, by id.
export INFERPUSH_TEST_RUN="run-$$-$(date +%s)"
cleanup() {
  if command -v podman > /dev/null; then
    podman ps -aq --filter "label=inferpush.test-run=$INFERPUSH_TEST_RUN" | xargs -r podman rm -f > /dev/null 2>&1 || true
  fi
  [[ -n "$podman_pid" ]] && kill "$podman_pid" 2> /dev/null || true
  rm -rf "$log" "$socket_dir"
}
trap cleanup EXIT

if command -v podman > /dev/null; then
  podman system service --time=0 "unix://$socket_dir/podman.sock" 2> /dev/null &
  podman_pid=$!
  export DOCKER_HOST="unix://$socket_dir/podman.sock"
  for _ in $(seq 100); do
    [[ -S "$socket_dir/podman.sock" ]] && break
    sleep 0.1
  done
fi

status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     END { printf "\nsummary: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
