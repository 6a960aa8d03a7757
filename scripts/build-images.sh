#!/usr/bin/env bash
# `make images`: the container images, built with Podman from a Debian base made here
# with debootstrap (no registry is reachable). The Rust binaries are the host's release
# build (`make build-release`), copied in, never compiled in an image.
#
#   scripts/build-images.sh                       every image
#   scripts/build-images.sh soketi rabbitmq redis  only these (what the container tests use)
#   scripts/build-images.sh sockudo               Sockudo (built once into the cache first)
#   scripts/build-images.sh worker-cuda            the GPU worker (after `make build-gpu`)
#
# An image is rebuilt only when what goes into it changed: each carries the SHA-256 of its
# staged context, Containerfile and base image as a label, compared before building.
#
# Caches outside the clone, so CI and later sessions reuse them:
#   $INFERPUSH_CACHE (default /var/cache/inferpush): the debootstrap tarball, and the CUDA
#     runtime wheels of the GPU worker image;
#   Podman's own store: the images.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
cache="${INFERPUSH_CACHE:-/var/cache/inferpush}"
base="localhost/inferpush/debian:bookworm"
stage="$target_dir/images"

scripts/ensure-podman.sh

# The base: Debian bookworm, minbase variant, from the mirror this machine's apt uses.
if ! podman image exists "$base"; then
  tarball="$cache/debian-bookworm-minbase.tar"
  if [[ ! -s "$tarball" ]]; then
    mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2> /dev/null ||
      awk '/^deb / { print $2; exit }' /etc/apt/sources.list)
    rootfs="$cache/rootfs"
    echo "debootstrap: bookworm minbase from $mirror"
    mkdir -p "$cache" && rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" > "$cache/debootstrap.log"
    # What no container reads: documentation, manuals, translations, apt's package lists.
    rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*
    tar -C "$rootfs" -c . > "$tarball.partial" && mv "$tarball.partial" "$tarball"
    rm -rf "$rootfs"
  fi
  podman import --quiet "$tarball" "$base" > /dev/null
  echo "imported $base"
fi
base_id=$(podman image inspect --format '{{.Id}}' "$base")

images=("$@")
((${#images[@]})) || images=(api worker soketi sockudo rabbitmq redis haproxy)
release="$target_dir/release"

# Stages the context of image $1 (files after it: SOURCE:DEST pairs), then builds it
# unless an image with the same content label exists.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

build() {
  local name=$1
  shift
  local context="$stage/$name"
  rm -rf "$context" && mkdir -p "$context"
  for pair in "$@"; do
    local source=${pair%%:*} dest=${pair#*:}
    mkdir -p "$(dirname "$context/$dest")"
    cp -a "$source" "$context/$dest"
  done
  # The release build keeps line tables for backtraces on the host; images ship without.
  for binary in "$context"/inferpush-* "$context"/sockudo; do
    [[ -f "$binary" ]] && strip --strip-debug "$binary"
  done
  local containerfile="deploy/images/$name.Containerfile"
  local hash
  hash=$({
    echo "$base_id"
    sha256sum "$containerfile" | cut -d' ' -f1
    (cd "$context" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum)
  } | sha256sum | cut -d' ' -f1)
  local image="localhost/inferpush-$name:latest"
  local built
  built=$(podman image inspect --format '{{index .Labels "inferpush.content"}}' "$image" 2> /dev/null || true)
  if [[ "$built" == "$hash" ]]; then
    echo "$image is up to date"
  else
    echo "building $image"
    podman build --quiet --pull=never --format docker --build-arg "BASE=$base" \
      --label "inferpush.content=$hash" -t "$image" -f "$containerfile" "$context" > /dev/null
  fi
  # Also under the release's version, the tag the Helm chart names by default.
  podman tag "$image" "localhost/inferpush-$name:$version"
}

for image in "${images[@]}"; do
  case "$image" in api | worker)
    [[ -x "$release/inferpush-$image" ]] || { echo "missing $release/inferpush-$image: run make build-release" >&2; exit 1; }
  esac
done
binary() { echo "$release/$1:$1"; }

# The CUDA 13.0 libraries the GPU worker links (the driver's libcuda aside), from NVIDIA's
# wheels on PyPI, unpacked once into the cache; prints the folder.
cuda_runtime() {
  local dir="$cache/cuda-13.0-runtime"
  if [[ ! -e "$dir/.complete" ]]; then
    rm -rf "$dir" && mkdir -p "$dir/wheels" "$dir/unpacked" "$dir/lib"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$dir/wheels" \
      nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-runtime==13.0.96 >&2
    for wheel in "$dir"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$dir/unpacked/"; done
    find "$dir/unpacked" -name 'lib*.so*' -exec cp -a {} "$dir/lib/" \;
    rm -rf "$dir/wheels" "$dir/unpacked"
    touch "$dir/.complete"
  fi
  echo "$dir/lib"
}

probe=deploy/images/http-probe:http-probe
# The host's CA bundle, so a worker can push to a Pusher server over HTTPS with a public
# certificate (the minbase image has none, and the HTTP client needs roots to build).
cas=/etc/ssl/certs/ca-certificates.crt:ca-certificates.crt
pusher_js=web-demo/node_modules/pusher-js/dist/web/pusher.min.js
# The models the images carry: echo (a card alone) and all-MiniLM-L6-v2, whole in the
# workers' images, their cards alone in the api's (it reads cards, never weights). Other
# models are mounted (the chart's modelRepository values).
shipped=("models/echo:models/echo" "models/all-minilm-l6-v2:models/all-minilm-l6-v2")
cards=()
for model in echo all-minilm-l6-v2; do cards+=("models/$model/model.toml:models/$model/model.toml"); done
for image in "${images[@]}"; do
  case "$image" in
    api) build api "$(binary inferpush-api)" "$probe" "web-demo/public:web-demo/public" "$pusher_js:$pusher_js" \
      "${cards[@]}" ;;
    worker) build worker "$(binary inferpush-worker)" "$probe" "$cas" \
      "${shipped[@]}" "models/onnxruntime:models/onnxruntime" ;;
    worker-cuda)
      gpu=target/gpu-dist/inferpush-worker
      [[ -x "$gpu" ]] || { echo "missing $gpu: run make build-gpu" >&2; exit 1; }
      build worker-cuda "$gpu:inferpush-worker" "$probe" "$cas" "$(cuda_runtime):cuda" "${shipped[@]}" ;;
    soketi) build soketi "$(command -v node):node" "$probe" "soketi/package.json:soketi/package.json" \
      "soketi/package-lock.json:soketi/package-lock.json" "soketi/node_modules:soketi/node_modules" ;;
    sockudo) build sockudo "$(scripts/ensure-sockudo.sh):sockudo" "$probe" ;;
    rabbitmq | redis | haproxy) build "$image" ;;
    *) echo "unknown image $image" >&2; exit 1 ;;
  esac
done

podman images --filter "reference=localhost/inferpush-*" --format '{{.Repository}}:{{.Tag}} {{.Size}}'
