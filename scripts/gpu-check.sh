#!/usr/bin/env bash
# The GPU check: the worker's embedding engine on a GPU against PyTorch on the same GPU, and
# its generation engine on the GPU against the CPU network (llama.cpp's numbers).
# Runs on the GPU machine from a carried release binary (built here by `make build-gpu`);
# that machine has PyTorch and transformers but no network, and the real weights do not
# travel, so a BERT with all-MiniLM-L6-v2's configuration and random weights is built
# there. Asserts cosine >= 0.999 (f32) against PyTorch, then reports sentences/s at
# batch 1, 32 and 256, f32 and f16, worker against PyTorch, in the same run.
# Generation: SmolLM2's header (tokenizer, template, shapes; `make build-gpu` cuts it from
# the real file) gets random Q4_1 weights there (scripts/random_gguf.py); the worker's
# `generate` decodes the fixture's 10 chat prompts greedily on the CPU network, feeds the
# same tokens to the GPU network, and asserts the GPU's likeliest token agrees at >= 90 %
# of positions (GPU_CHECK_AGREEMENT); then tokens/s for 1 and 8 streams on the GPU.
#
#   device tool: run  command="scripts/gpu-check.sh"  carry=["target/gpu-dist/inferpush-worker.xz",
#                "target/gpu-dist/smollm2-header.gguf",
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

HEADER=${GPU_CHECK_GGUF_HEADER:-target/gpu-dist/smollm2-header.gguf}
if [ -f "$HEADER" ]; then
  echo "== generation: random-weight SmolLM2 on $DEVICE against the CPU network"
  GEN_DIR="$SCRATCH/models/smollm2-135m-instruct"
  mkdir -p "$GEN_DIR"
  "$PY" scripts/random_gguf.py fill "$HEADER" "$GEN_DIR/model.gguf"
  cat > "$GEN_DIR/model.toml" <<CARD
name = "smollm2-135m-instruct"
kind = "text-generation"
version = "gpu-check"
[[files]]
path = "model.gguf"
sha256 = "$(sha "$GEN_DIR/model.gguf")"
[text_generation]
gguf = "model.gguf"
context_length = 2048
max_tokens = 512
max_concurrent_sequences = 8
CARD
  "$PY" -c 'import json, re, sys
cases = json.load(open(sys.argv[1]))["cases"]
print(json.dumps([re.search(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", c["prompt"], re.S).group(1) for c in cases]))' \
    worker/tests/fixtures/smollm2-greedy.json > "$OUT/prompts.json"
  worker generate --model smollm2-135m-instruct --prompts "$OUT/prompts.json" --streams 1,8 \
    --output "$OUT/generated.json" | tee "$OUT/generate.jsonl"
else
  echo "== generation: skipped ($HEADER missing: make build-gpu writes it)"
fi

echo "== report"
"$PY" scripts/gpu_check.py report --out "$OUT" --agreement "${GPU_CHECK_AGREEMENT:-0.9}"
