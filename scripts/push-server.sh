#!/usr/bin/env bash
# Starts the Pusher-protocol server that INFERPUSH_PUSH_SERVER names (`soketi`, the default,
# or `sockudo`) in the foreground, configured from the same values as the api and the
# worker, so `make run`, the test harness and anyone else start either the same way. It
# replaces itself with the server (exec): its pid is the server's, signals reach it.
#
#   PUSHER_APP_ID / PUSHER_APP_KEY / PUSHER_APP_SECRET   the one app (default: the dev app)
#   PUSHER_PORT                          WebSockets and the REST API (default 6001)
#   INFERPUSH_PUSH_SERVER_HOST           address to listen on (default 127.0.0.1)
#   INFERPUSH_PUSH_SERVER_TLS_CERT/_KEY  serve TLS with this PEM certificate and key
#   INFERPUSH_PUSH_SERVER_REDIS_URL      share channels with other nodes through Redis
#   INFERPUSH_PUSH_SERVER_METRICS_PORT   Prometheus metrics on this port (default: off)
#   INFERPUSH_PUSH_SERVER_GRACE_MS       how long a stop waits for connections (default 3000)
#
# Both servers get limits that never refuse the platform's own traffic: no cap on
# connections, backend events or REST reads per app, no per-IP rate limiter (Sockudo's
# defaults allow 100 connections per app, 100 REST calls a minute and 20 new connections a
# minute per IP). What the two still do differently is in the README's client section.
set -euo pipefail
cd "$(dirname "$0")/.."

server="${INFERPUSH_PUSH_SERVER:-soketi}"
app_id="${PUSHER_APP_ID:-app-id}" app_key="${PUSHER_APP_KEY:-app-key}" app_secret="${PUSHER_APP_SECRET:-app-secret}"
port="${PUSHER_PORT:-6001}" host="${INFERPUSH_PUSH_SERVER_HOST:-127.0.0.1}"
cert="${INFERPUSH_PUSH_SERVER_TLS_CERT:-}" key="${INFERPUSH_PUSH_SERVER_TLS_KEY:-}"
redis="${INFERPUSH_PUSH_SERVER_REDIS_URL:-}" metrics="${INFERPUSH_PUSH_SERVER_METRICS_PORT:-}"
grace_ms="${INFERPUSH_PUSH_SERVER_GRACE_MS:-3000}"
if [[ -n "$cert" && -z "$key" || -z "$cert" && -n "$key" ]]; then
  echo "push-server: set both INFERPUSH_PUSH_SERVER_TLS_CERT and INFERPUSH_PUSH_SERVER_TLS_KEY, or neither" >&2
  exit 2
fi

case "$server" in
  soketi)
    env=(
      SOKETI_HOST="$host" SOKETI_PORT="$port"
      SOKETI_DEFAULT_APP_ID="$app_id" SOKETI_DEFAULT_APP_KEY="$app_key" SOKETI_DEFAULT_APP_SECRET="$app_secret"
      SOKETI_DEFAULT_APP_MAX_CONNS=-1 SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC=-1
      SOKETI_DEFAULT_APP_MAX_READ_REQ_PER_SEC=-1 SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES=false
      SOKETI_SHUTDOWN_GRACE_PERIOD="$grace_ms"
    )
    [[ -n "$cert" ]] && env+=(SOKETI_SSL_CERT="$cert" SOKETI_SSL_KEY="$key")
    if [[ -n "$redis" ]]; then
      # Soketi's Redis adapter takes a host and a port, not a URL.
      address="${redis#*://}" && address="${address##*@}" && address="${address%%/*}"
      env+=(SOKETI_ADAPTER_DRIVER=redis SOKETI_DB_REDIS_HOST="${address%:*}")
      [[ "$address" == *:* ]] && env+=(SOKETI_DB_REDIS_PORT="${address##*:}")
    fi
    if [[ -n "$metrics" ]]; then
      env+=(SOKETI_METRICS_ENABLED=true SOKETI_METRICS_SERVER_PORT="$metrics")
    else
      env+=(SOKETI_METRICS_ENABLED=false)
    fi
    exec env "${env[@]}" soketi/node_modules/.bin/soketi start
    ;;
  sockudo)
    binary="$(scripts/ensure-sockudo.sh)"
    unlimited=1000000000
    env=(
      HOST="$host" PORT="$port"
      SOCKUDO_DEFAULT_APP_ID="$app_id" SOCKUDO_DEFAULT_APP_KEY="$app_key" SOCKUDO_DEFAULT_APP_SECRET="$app_secret"
      SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS="$unlimited"
      SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND="$unlimited"
      SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND="$unlimited"
      SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES=false
      SOCKUDO_MAX_CONNECTIONS="$unlimited"
      RATE_LIMITER_ENABLED=false LOG_COLORS_ENABLED=false
      CACHE_DRIVER=memory QUEUE_DRIVER=memory APP_MANAGER_DRIVER=memory
      SHUTDOWN_GRACE_PERIOD="$(((grace_ms + 999) / 1000))"
    )
    [[ -n "$cert" ]] && env+=(SSL_ENABLED=true SSL_CERT_PATH="$cert" SSL_KEY_PATH="$key" SSL_REDIRECT_HTTP=false)
    if [[ -n "$redis" ]]; then
      # Sockudo refuses a node-local cache beside a clustered adapter.
      env+=(ADAPTER_DRIVER=redis CACHE_DRIVER=redis REDIS_URL="$redis")
    else
      env+=(ADAPTER_DRIVER=local)
    fi
    if [[ -n "$metrics" ]]; then
      env+=(METRICS_ENABLED=true METRICS_HOST="$host" METRICS_PORT="$metrics")
    else
      env+=(METRICS_ENABLED=false)
    fi
    exec env "${env[@]}" "$binary"
    ;;
  *)
    echo "push-server: INFERPUSH_PUSH_SERVER must be soketi or sockudo, not '$server'" >&2
    exit 2
    ;;
esac
