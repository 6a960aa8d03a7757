#!/usr/bin/env bash
# Makes sure the local services the tests use are up, starting any that is stopped.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "error: $name did not come up on port $port" >&2
  exit 1
}

if ! port_open 5672; then
  echo "RabbitMQ is down; starting it"
  rabbitmq-server -detached
  wait_port RabbitMQ 5672
fi
# The port opens before the broker accepts work; wait until it answers.
for _ in $(seq 1 60); do
  rabbitmqctl -q status >/dev/null 2>&1 && break
  sleep 1
done
echo "RabbitMQ: up"

if ! port_open 6379; then
  echo "Redis is down; starting it"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_port Redis 6379
fi
echo "Redis: up"
