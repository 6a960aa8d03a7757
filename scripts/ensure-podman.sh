#!/usr/bin/env bash
# Podman, runc and debootstrap from Debian, with the two host settings this machine kind
# needs (see ../shared/CONTAINERS.md): a nofile/nproc limit root may set, and runc (crun
# refuses this machine's cgroup layout). Idempotent: does nothing when all is in place.
set -euo pipefail

missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" > /dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap > /dev/null
fi

conf=/etc/containers/containers.conf
if ! grep -q '^runtime = "runc"' "$conf" 2> /dev/null; then
  mkdir -p "$(dirname "$conf")"
  cat >> "$conf" << 'CONF'

# inferpush (scripts/ensure-podman.sh): root here may not raise nofile past ~20000, and
# crun refuses this machine's cgroup layout; runc works.
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
[engine]
runtime = "runc"
CONF
  echo "configured $conf"
fi
