#!/usr/bin/env bash
# `make cluster-up` / `make cluster-down`: deploy/compose.yaml with podman-compose (from
# PyPI, installed when missing), or `docker compose` where a Docker engine answers. With
# INFERPUSH_PUSH_SERVER=sockudo, deploy/compose.sockudo.yaml too: Sockudo's nodes instead
# of Soketi's.
#   scripts/cluster.sh up     start it and wait until the api answers /readyz on 127.0.0.1:8080
#                             and both push server nodes listen (:6011, :6012)
#   scripts/cluster.sh down   stop and remove every container of it
#   scripts/cluster.sh ps     list them
#   scripts/cluster.sh kill SERVICE | start SERVICE | exec SERVICE CMD…   (the fault tests)
set -euo pipefail
cd "$(dirname "$0")/.."

if docker info > /dev/null 2>&1 && docker compose version > /dev/null 2>&1; then
  tool=(docker compose)
else
  command -v podman-compose > /dev/null || python3 -m pip install -q podman-compose
  tool=(podman-compose)
fi
compose=("${tool[@]}" -f deploy/compose.yaml)
server="${INFERPUSH_PUSH_SERVER:-soketi}"
case "$server" in
  soketi) ;;
  sockudo) compose+=(-f deploy/compose.sockudo.yaml) ;;
  *) echo "INFERPUSH_PUSH_SERVER must be soketi or sockudo, not '$server'" >&2; exit 2 ;;
esac

case "${1:-}" in
  up)
    # RabbitMQ first, until all three nodes are one cluster: a queue declared before that
    # would get members only on the nodes already joined.
    "${compose[@]}" up -d rabbitmq-1 rabbitmq-2 rabbitmq-3
    echo "waiting for the three RabbitMQ nodes to form one cluster"
    for _ in $(seq 60); do
      "${compose[@]}" exec -T rabbitmq-1 rabbitmqctl -q await_online_nodes 3 --timeout 120 > /dev/null 2>&1 && break
      sleep 2
    done
    # Redis and its Sentinels next, until each Sentinel names the master: a push server
    # node that asks a Sentinel before it knows redis-1 gets no address and exits.
    "${compose[@]}" up -d redis-1 redis-2 sentinel-1 sentinel-2 sentinel-3
    echo "waiting for the three Sentinels to name the Redis master"
    for sentinel in 1 2 3; do
      for _ in $(seq 60); do
        "${compose[@]}" exec -T "sentinel-$sentinel" redis-cli -p 26379 \
          sentinel get-master-addr-by-name inferpush 2> /dev/null | grep -q 6379 && break
        sleep 1
      done
    done
    "${compose[@]}" up -d
    # Queues that exist from before (a node replaced, a restart) get a member on every node.
    for node in 1 2 3; do
      "${compose[@]}" exec -T rabbitmq-1 rabbitmq-queues -q grow "rabbit@rabbitmq-$node" all > /dev/null 2>&1 || true
    done
    echo "waiting for the cluster's api on http://127.0.0.1:8080/readyz and $server on :6011 and :6012"
    for _ in $(seq 180); do
      ready=true
      [[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/readyz)" == 200 ]] || ready=false
      for node in 1 2; do
        # Any HTTP answer means the node listens; one that exited at start is started again.
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:601$node/")" == 000 ]]; then
          ready=false
          "${compose[@]}" start "$server-$node" > /dev/null 2>&1 || true
        fi
      done
      if $ready; then
        echo "the cluster is up: api http://127.0.0.1:8080 (demo page at /), $server ws://127.0.0.1:6001"
        exit 0
      fi
      sleep 1
    done
    echo "the cluster did not become ready; \`scripts/cluster.sh ps\` and \`podman logs NAME\` tell why" >&2
    exit 1
    ;;
  # Whichever push server it was started with: both files, every profile.
  down) COMPOSE_PROFILES=soketi "${tool[@]}" -f deploy/compose.yaml -f deploy/compose.sockudo.yaml down -t 5 ;;
  ps) "${compose[@]}" ps ;;
  kill) "${compose[@]}" kill "$2" ;;
  start) "${compose[@]}" start "$2" ;;
  exec)
    shift
    "${compose[@]}" exec -T "$@"
    ;;
  *)
    echo "usage: $0 up|down|ps|kill SERVICE|start SERVICE|exec SERVICE CMD…" >&2
    exit 2
    ;;
esac
