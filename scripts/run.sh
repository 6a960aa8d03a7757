#!/usr/bin/env bash
# Starts the Pusher-protocol server (INFERPUSH_PUSH_SERVER: soketi, the default, or
# sockudo), the api and the worker in the foreground with labelled logs.
# Ctrl-C (or SIGTERM) stops all three; the worker finishes the tasks in hand first.
set -euo pipefail
cd "$(dirname "$0")/.."

export INFERPUSH_DEV_MODE="${INFERPUSH_DEV_MODE:-true}"
export PUSHER_APP_ID="${PUSHER_APP_ID:-app-id}" PUSHER_APP_KEY="${PUSHER_APP_KEY:-app-key}"
export PUSHER_APP_SECRET="${PUSHER_APP_SECRET:-app-secret}" PUSHER_PORT="${PUSHER_PORT:-6001}"
BIN="${CARGO_TARGET_DIR:-target}/release"
# Events go to Pusher, server-sent events and webhooks; and to MQTT when a broker answers
# on INFERPUSH_MQTT_URL (the local Mosquitto by default).
MQTT_HOSTPORT="${INFERPUSH_MQTT_URL:-mqtt://127.0.0.1:1883}"; MQTT_HOSTPORT="${MQTT_HOSTPORT#*://}"; MQTT_HOSTPORT="${MQTT_HOSTPORT#*@}"
if [ -z "${INFERPUSH_SINKS:-}" ]; then
  INFERPUSH_SINKS=pusher,sse,webhook
  if timeout 1 bash -c "exec 3<>/dev/tcp/${MQTT_HOSTPORT%:*}/${MQTT_HOSTPORT##*:}" 2>/dev/null; then
    INFERPUSH_SINKS="$INFERPUSH_SINKS,mqtt"
  fi
fi
export INFERPUSH_SINKS
# Development webhooks may go to this machine's own receivers.
export INFERPUSH_WEBHOOK_ALLOWED_HOSTS="${INFERPUSH_WEBHOOK_ALLOWED_HOSTS:-localhost,127.0.0.0/8,::1}"

scripts/ensure-services.sh

pids=()
stop() {
  trap - INT TERM EXIT
  echo "stopping…"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # The worker finishes its tasks in hand (up to its grace period, 30 s); the push server
  # keeps no state but sometimes lingers after SIGTERM, so it gets 5 s. Whatever still runs
  # then goes.
  for tick in $(seq 1 400); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    [ "$tick" = 50 ] && kill -KILL "$push_server" 2>/dev/null || true
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

label() { sed -u "s/^/[$1] /"; }

export INFERPUSH_PUSH_SERVER="${INFERPUSH_PUSH_SERVER:-soketi}"
scripts/push-server.sh > >(label "$INFERPUSH_PUSH_SERVER") 2>&1 &
push_server=$!
pids+=("$push_server")
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PUSHER_PORT/ready" >/dev/null && break; sleep 0.2; done

"$BIN/inferpush-api" > >(label api) 2>&1 &
pids+=($!)
"$BIN/inferpush-worker" > >(label worker) 2>&1 &
pids+=($!)

echo "inferpush is up: demo page and api http://127.0.0.1:8080/, $INFERPUSH_PUSH_SERVER ws://127.0.0.1:$PUSHER_PORT, events to $INFERPUSH_SINKS (Ctrl-C stops everything)"
wait -n "${pids[@]}" || true
echo "a process exited; stopping the others"
