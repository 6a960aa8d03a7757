#!/usr/bin/env bash
# mdBook, pinned, built once into a cache outside the clone (about 3 minutes on two cores) and
# reused, as Sockudo is. Prints the binary's path.
set -euo pipefail
VERSION=${MDBOOK_VERSION:-0.5.4}
root="${INFERPUSH_CACHE:-/var/cache/inferpush}/mdbook-$VERSION"
binary="$root/bin/mdbook"
if [[ ! -x "$binary" ]]; then
  echo "building mdbook $VERSION into $root (once)" >&2
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  # Only the book builder and its search index: no `serve` or `watch` (their web server).
  CARGO_TARGET_DIR="$build" cargo install mdbook --version "$VERSION" --locked --no-default-features \
    --features search --root "$root" >&2
fi
echo "$binary"
