#!/usr/bin/env bash
# Runs every test binary of the workspace (built once, shared) against Soketi, then the
# tests that involve the push server again against Sockudo, and closes with one summary
# line per pass. For the container mode it serves Podman's Docker API on
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

# One pass: cargo test with the given arguments against push server $1; prints its summary.
status=0
pass() {
  local server=$1
  shift
  : > "$log"
  INFERPUSH_PUSH_SERVER="$server" cargo test --no-fail-fast "$@" 2>&1 | tee -a "$log" || status=1
  awk -v server="$server" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
       END { printf "\nsummary (%s): %d passed, %d failed, %d skipped\n", server, p, f, s }' "$log" | tee -a "$summaries"
}
summaries=$(mktemp)
trap 'cleanup; rm -f "$summaries"' EXIT

server="${INFERPUSH_PUSH_SERVER:-soketi}"
pass "$server" --workspace "$@"
# The second Pusher-protocol server: the tests whose clients listen through the push server
# run again against Sockudo: end to end (auth, forged signatures, encrypted channels, fan-out),
# the clients (pusher-js, Laravel Echo, the demo page, their reconnects), TLS, every fault
# (worker, push server, RabbitMQ, Redis, lost confirms; processes and containers), the sinks
# and deadlines. Units, api routes, startup checks, the OpenAPI document, bounds, fairness,
# observability, the hostile inputs and the OpenAI SDKs are not repeated: they judge the api
# and the worker, not the push server. INFERPUSH_SOCKUDO_PASS=false skips the pass.
if [[ "$server" == soketi && "${INFERPUSH_SOCKUDO_PASS:-true}" == true && $# == 0 ]]; then
  pass sockudo -p inferpush-integration-tests \
    --test e2e --test clients --test faults --test unconfirmed --test tls --test sinks --test deadlines
fi
echo
cat "$summaries"
exit "$status"
