#!/usr/bin/env bash
# Builds the GPU worker (cargo feature `cuda`) on a machine with no GPU and no system CUDA,
# into target/gpu-dist/inferpush-worker and its .xz (what scripts/gpu-check.sh runs on a GPU machine).
#
# nvcc, NVVM and the CUDA headers come from NVIDIA's PyPI wheels, pinned to CUDA 13.0 (the
# GPU machines' driver refuses newer PTX), merged into one CUDA_HOME under .gpu-tools/.
# candle turns on cudarc's `dynamic-linking` (it cannot be combined with cudarc's
# `dynamic-loading`), so the link step wants libcuda, libcublas, libcublasLt, libcurand
# and libnvrtc. No wheel ships libcuda and the others are hundreds of MB, so stub
# libraries are generated here from cudarc's own bindings, under the real libraries'
# sonames, in $CUDA_HOME/lib/stubs (where cudarc's build script looks). At run time the
# GPU machine's real libraries take their place (driver + PyTorch's nvidia wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${GPU_TOOLS_DIR:-$PWD/.gpu-tools}
CUDA_DIR="$TOOLS/cuda"
TARGET=${GPU_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/gpu}
DIST=target/gpu-dist
WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
# library name : cudarc module whose bindings it serves : soname of the CUDA 13 library
STUBS=(cuda:driver:libcuda.so.1 nvrtc:nvrtc:libnvrtc.so.13 curand:curand:libcurand.so.10
       cublas:cublas:libcublas.so.13 cublasLt:cublaslt:libcublasLt.so.13)

if [ ! -x "$CUDA_DIR/bin/nvcc" ]; then
  echo "fetching the CUDA 13.0 build tools from PyPI: ${WHEELS[*]}"
  rm -rf "$TOOLS/wheels" "$TOOLS/unpacked" "$CUDA_DIR"
  mkdir -p "$TOOLS/wheels" "$TOOLS/unpacked" "$CUDA_DIR"
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$TOOLS/wheels" "${WHEELS[@]}"
  for wheel in "$TOOLS"/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$TOOLS/unpacked/"; done
  cp -a "$TOOLS"/unpacked/nvidia/cu13/. "$CUDA_DIR"/
  # Wheels do not keep file modes.
  find "$CUDA_DIR/bin" "$CUDA_DIR/nvvm/bin" -type f -exec chmod +x {} +
  # The linker looks for unversioned names.
  for lib in "$CUDA_DIR"/lib/lib*.so.*; do
    ln -sf "$(basename "$lib")" "$CUDA_DIR/lib/$(basename "$lib" | sed 's/\.so\..*/.so/')"
  done
fi

cargo fetch --locked
cudarc_version=$(awk '/^name = "cudarc"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
cudarc_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"cudarc-$cudarc_version" | head -1)
mkdir -p "$CUDA_DIR/lib/stubs" "$TOOLS/stubs"
for spec in "${STUBS[@]}"; do
  IFS=: read -r lib module soname <<< "$spec"
  grep -ho 'pub unsafe fn [A-Za-z0-9_]*' "$cudarc_src/src/$module/sys/"*.rs \
    | awk '{ print "void " $4 "(void) {}" }' | sort -u > "$TOOLS/stubs/$lib.c"
  gcc -shared -fPIC -o "$CUDA_DIR/lib/stubs/lib$lib.so" -Wl,-soname,"$soname" "$TOOLS/stubs/$lib.c"
done
echo "stubs for cudarc $cudarc_version: $(ls "$CUDA_DIR/lib/stubs" | tr '\n' ' ')"

export CUDA_HOME="$CUDA_DIR" CUDA_PATH="$CUDA_DIR" CUDA_ROOT="$CUDA_DIR" PATH="$CUDA_DIR/bin:$PATH"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
nvcc --version | tail -2
CARGO_TARGET_DIR="$TARGET" cargo build --locked --release -p inferpush-worker --features cuda
# Stripped, then compressed for the trip to the GPU machine (64 MiB carry limit; the
# kernels' PTX is text and compresses well): about 60 MB, and 9 MB as .xz.
mkdir -p "$DIST"
strip -o "$DIST/inferpush-worker" "$TARGET/release/inferpush-worker"
xz -T2 -6 -c "$DIST/inferpush-worker" > "$DIST/inferpush-worker.xz"
echo "built $DIST/inferpush-worker ($(du -h "$DIST/inferpush-worker" | cut -f1)) and .xz ($(du -h "$DIST/inferpush-worker.xz" | cut -f1)); needs on its machine:"
readelf -d "$DIST/inferpush-worker" | awk '/NEEDED/ { print "  " $5 }' | tr -d '[]'
# The generation check's model: SmolLM2's header alone (about 2 MB; random weights are
# written on the GPU machine, scripts/random_gguf.py).
scripts/fetch-model.sh >/dev/null
python3 scripts/random_gguf.py header models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
  "$DIST/smollm2-header.gguf"
