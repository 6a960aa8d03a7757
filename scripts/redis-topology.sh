#!/usr/bin/env bash
# Starts a Redis set-up from Debian's redis-server on free ports, for tests and benchmarks:
#   scripts/redis-topology.sh cluster  NAME PID   three primaries in one Redis Cluster
#   scripts/redis-topology.sh sentinel NAME PID   a master, its replica, and one Sentinel
#                                                 watching them as NAME (failover after 1 s;
#                                                 with SENTINEL_PASSWORD set, it asks for it)
# Every server runs under a small watcher that kills it when process PID is gone (the test
# binary or benchmark that asked), so nothing outlives its user, passed or not. Prints, once
# all is ready, lines of `KEY=VALUE`: CLUSTER_NODES, or SENTINELS, MASTER, MASTER_PORT and
# REPLICA_PORT (all on 127.0.0.1).
set -euo pipefail
kind=${1:?cluster or sentinel}
name=${2:?a name}
watch=${3:?the pid to outlive}
dir=$(mktemp -d "${TMPDIR:-/tmp}/inferpush-$kind-$name-XXXXXX")

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# redis-server ARGS…, watched: killed when $watch or the server itself is gone.
watched() {
  WATCH=$watch setsid sh -c 'redis-server "$@" & server=$!
trap "kill -9 \$server 2>/dev/null" EXIT
while kill -0 "$WATCH" 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 0.5; done' sh "$@" \
    < /dev/null > /dev/null 2>&1 &
}

# Waits up to $1 seconds for `redis-cli -p $2 ${@:4}` to print something matching $3.
answers() {
  local seconds=$1 port=$2 pattern=$3
  shift 3
  for _ in $(seq $((seconds * 10))); do
    redis-cli -p "$port" "$@" 2> /dev/null | grep -q -- "$pattern" && return 0
    sleep 0.1
  done
  return 1
}

until_answer() {
  answers "$@" || { echo "redis on $2: no \`$3\` from \`${*:4}\` within $1s" >&2; exit 1; }
}

# Starts a server (`redis-server --port PORT ARGS…`) on a free port, and prints the port once
# it answers; a port taken meanwhile (by another test's connection) means another try.
serve() {
  local port
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    watched --port "$port" "$@"
    if answers 5 "$port" PONG ping; then
      echo "$port"
      return 0
    fi
  done
  echo "redis-server $*: not answering on any of five free ports" >&2
  exit 1
}

common=(--bind 127.0.0.1 --save "" --appendonly no)
case "$kind" in
  cluster)
    ports=()
    for node in 1 2 3; do
      mkdir -p "$dir/$node"
      ports+=("$(serve "${common[@]}" --dir "$dir/$node" --cluster-enabled yes \
        --cluster-config-file nodes.conf --cluster-node-timeout 2000)")
    done
    nodes=$(printf '127.0.0.1:%s ' "${ports[@]}")
    redis-cli --cluster create $nodes --cluster-replicas 0 --cluster-yes > /dev/null
    for port in "${ports[@]}"; do until_answer 20 "$port" cluster_state:ok cluster info; done
    echo "CLUSTER_NODES=$(printf '127.0.0.1:%s,' "${ports[@]}" | sed 's/,$//')"
    ;;
  sentinel)
    mkdir -p "$dir/master" "$dir/replica"
    master=$(serve "${common[@]}" --dir "$dir/master")
    replica=$(serve "${common[@]}" --dir "$dir/replica" --replicaof 127.0.0.1 "$master")
    until_answer 20 "$replica" master_link_status:up info replication
    sentinel=$(free_port)
    cat > "$dir/sentinel.conf" << EOF
port $sentinel
bind 127.0.0.1
dir $dir
sentinel monitor $name 127.0.0.1 $master 1
sentinel down-after-milliseconds $name 1000
sentinel failover-timeout $name 5000
EOF
    if [[ -n "${SENTINEL_PASSWORD:-}" ]]; then echo "requirepass $SENTINEL_PASSWORD" >> "$dir/sentinel.conf"; fi
    watched "$dir/sentinel.conf" --sentinel
    REDISCLI_AUTH="${SENTINEL_PASSWORD:-}" until_answer 10 "$sentinel" "$master" sentinel get-master-addr-by-name "$name"
    echo "SENTINELS=127.0.0.1:$sentinel"
    echo "MASTER=$name"
    echo "MASTER_PORT=$master"
    echo "REPLICA_PORT=$replica"
    ;;
  *)
    echo "cluster or sentinel, not $kind" >&2
    exit 2
    ;;
esac
