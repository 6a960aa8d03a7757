#!/usr/bin/env bash
# The GPU check: the worker's embedding engine on a GPU against PyTorch on the same GPU.
# Runs on the GPU machine from a carried release binary (built here by `make build-gpu`);
# that machine has PyTorch and transformers but no network, and the real weights do not
# travel, so a BERT with all-MiniLM-L6-v2's configuration and random weights is built
# there. Asserts cosine >= 0.999 (f32) against PyTorch, then reports sentences/s at
# batch 1, 32 and 256, f32 and f16, worker against PyTorch, in the same run.
#
#   device tool: run  command="scripts/gpu-check.sh"  carry=["target/gpu-dist/inferpush-worker.xz",
#                "models/all-minilm-l6-v2/config.json", "models/all-minilm-l6-v2/tokenizer.json"]
#
# GPU_CHECK_DEVICE=cpu runs everything on the CPU (the script's own check, on any machine,
# with a CPU build in GPU_WORKER). Results (report.md, JSON) go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${GPU_WORKER:-target/gpu-dist/inferpush-worker}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
PY=${PYTHON:-python3}
SECONDS_PER_CASE=${GPU_CHECK_SECONDS:-3}
BATCHES=${GPU_CHECK_BATCHES:-1 32 256}
PRECISIONS=${GPU_CHECK_PRECISIONS:-f32 f16}
BENCH_SENTENCES=${GPU_CHECK_SENTENCES:-512}
OUT=${OUT:-target/gpu-check}
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
MODEL_DIR="$SCRATCH/models/all-minilm-l6-v2"
mkdir -p "$OUT" "$SCRATCH/libs"
: > "$OUT/bench.jsonl"

if [ ! -x "$BIN" ] && [ -f "$BIN.xz" ]; then
  "$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$BIN.xz" "$SCRATCH/inferpush-worker"
  chmod +x "$SCRATCH/inferpush-worker"
  BIN="$SCRATCH/inferpush-worker"
fi

echo "== machine"
[ "$DEVICE" = cpu ] || nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
ls -la "$BIN"

echo "== random-weight BERT and PyTorch's reference embeddings"
"$PY" scripts/gpu_check.py make --config models/all-minilm-l6-v2/config.json \
  --tokenizer models/all-minilm-l6-v2/tokenizer.json --model-dir "$MODEL_DIR" --out "$OUT" --device "$DEVICE" \
  --bench-sentences "$BENCH_SENTENCES"

if [ "$DEVICE" != cpu ]; then
  echo "== CUDA libraries: PyTorch's nvidia wheels, libcuda from the driver"
  NV=$("$PY" -c 'import nvidia, os; print(list(nvidia.__path__)[0])')
  libdirs=$(find "$NV" -type d -name lib | tr '\n' ':')
  export LD_LIBRARY_PATH="$SCRATCH/libs:${libdirs}${LD_LIBRARY_PATH:-}"
  # A soname the binary wants but no wheel has under that exact name: link the nearest.
  for soname in $(ldd "$BIN" | awk '/not found/ {print $1}'); do
    found=$(find "$NV" -name "${soname%%.so*}.so*" | sort | tail -1)
    [ -n "$found" ] && ln -sf "$found" "$SCRATCH/libs/$soname" && echo "linked $soname -> $found"
  done
  if ldd "$BIN" | grep 'not found'; then echo "GPU CHECK: FAILED (libraries missing)"; exit 1; fi
fi

# The worker reads models through the repository: the random BERT gets its card.
sha() { sha256sum "$1" | cut -d' ' -f1; }
cat > "$MODEL_DIR/model.toml" <<CARD
name = "all-minilm-l6-v2"
kind = "text-embedding"
version = "gpu-check"
[[files]]
path = "tokenizer.json"
sha256 = "$(sha "$MODEL_DIR/tokenizer.json")"
[[files]]
path = "config.json"
sha256 = "$(sha "$MODEL_DIR/config.json")"
[[files]]
path = "model.safetensors"
sha256 = "$(sha "$MODEL_DIR/model.safetensors")"
[limits]
max_tokens = 256
[text_embedding]
tokenizer = "tokenizer.json"
safetensors = "model.safetensors"
config = "config.json"
pooling = "mean"
normalize = true
dimensions = 384
CARD

worker() { "$BIN" --model-repository "$SCRATCH/models" --engine candle --device "$DEVICE" "$@"; }

echo "== the worker's engine on $DEVICE: the reference sentences"
for precision in $PRECISIONS; do
  worker --dtype "$precision" embed --input "$OUT/sentences.json" --batch-size 4 --output "$OUT/worker-$precision.json"
done

echo "== throughput: batch sizes $BATCHES, $SECONDS_PER_CASE s each"
for precision in $PRECISIONS; do
  for batch in $BATCHES; do
    worker --dtype "$precision" embed --input "$OUT/bench-sentences.json" --batch-size "$batch" \
      --seconds "$SECONDS_PER_CASE" | tee -a "$OUT/bench.jsonl"
    "$PY" scripts/gpu_check.py bench --model-dir "$MODEL_DIR" --input "$OUT/bench-sentences.json" \
      --batch-size "$batch" --precision "$precision" --device "$DEVICE" --seconds "$SECONDS_PER_CASE" \
      | tee -a "$OUT/bench.jsonl"
  done
done

echo "== report"
"$PY" scripts/gpu_check.py report --out "$OUT"
