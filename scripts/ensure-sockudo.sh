#!/usr/bin/env bash
# Sockudo, the maintained Pusher-protocol server in Rust (crates.io `sockudo`), built once
# into a cache outside the clone and reused: `cargo install` takes 7–15 minutes on two
# cores, so it reruns only when the pinned version or features change. Its default features
# hold no Redis: `redis` is added for the adapter that lets several nodes share channels. Its metrics exporter needs
# `protoc` and protobuf's well-known types (`google/protobuf/timestamp.proto`), installed
# from Debian if missing. Prints the binary's path.
set -euo pipefail
VERSION=${SOCKUDO_VERSION:-5.2.0}
FEATURES=redis
root="${INFERPUSH_CACHE:-/var/cache/inferpush}/sockudo-$VERSION-${FEATURES//,/-}"
binary="$root/bin/sockudo"
if [[ ! -x "$binary" ]]; then
  if ! command -v protoc >/dev/null || [[ ! -f /usr/include/google/protobuf/timestamp.proto ]]; then
    echo "installing Debian's protobuf-compiler and libprotobuf-dev for Sockudo's build" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev >&2 \
      || { $sudo apt-get update >&2 \
        && $sudo apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev >&2; }
  fi
  echo "building sockudo $VERSION with $FEATURES into $root (once, 7–15 minutes on two cores)" >&2
  # Its own target folder, removed afterwards: the workspace's build is left alone.
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  CARGO_TARGET_DIR="$build" cargo install sockudo --version "$VERSION" --features "$FEATURES" --locked \
    --root "$root" >&2
fi
echo "$binary"
