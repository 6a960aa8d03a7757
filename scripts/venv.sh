#!/usr/bin/env bash
# Usage: scripts/venv.sh NAME "PKG==VER ..."  — makes sure $INFERPUSH_CACHE/NAME is a
# virtualenv holding exactly those pinned PyPI packages (reinstalled when the pins change)
# and prints its path. Tools the suite runs (the chart's checkers, schemathesis) live
# outside the clone this way, so CI installs them once.
set -euo pipefail
name=$1
packages=$2
venv="${INFERPUSH_CACHE:-/var/cache/inferpush}/$name"
stamp="$venv/.installed-$(printf %s "$packages" | sha256sum | cut -c1-12)"
# Tests running at once may ask for the same one: the first installs it, the others wait.
mkdir -p "$(dirname "$venv")"
exec 9> "$venv.lock"
flock 9
if [[ ! -f "$stamp" ]]; then
  echo "installing $name from PyPI into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q $packages >&2
  touch "$stamp"
fi
echo "$venv"
