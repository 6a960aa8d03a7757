"""The table of `make bench-model` and its goals, from the JSON lines of both programs.

Usage: bench_model_report.py OUT_DIR HAVE_ST(0|1)
Each figure is the median over the rounds; every engine's figure is given as a ratio
against sentence-transformers on the same set (the batcher's against its best fixed
batch size).
"""

import json
import statistics
import sys
from collections import defaultdict

out, have_st = sys.argv[1], sys.argv[2] == "1"
rows = defaultdict(list)
agreement = {}
for name in ("rust.jsonl", "st.jsonl"):
    for line in open(f"{out}/{name}"):
        r = json.loads(line)
        if r["case"] == "agreement":
            agreement[r["engine"]] = r["min_cosine"]
        else:
            rows[(r["engine"], r["set"], r["case"])].append(r)


def median(key, field):
    return statistics.median(r[field] for r in rows[key]) if key in rows else None


def st_rate(set_name, case):
    return median(("sentence-transformers", set_name, case), "sentences_per_s")


FIXED = ("batch 1", "batch 8", "batch 32")
print("| engine | set | case | sentences/s | p50 ms | p99 ms | vs sentence-transformers |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for (engine, set_name, case) in sorted(rows):
    key = (engine, set_name, case)
    rate, p50, p99 = (median(key, f) for f in ("sentences_per_s", "p50_ms", "p99_ms"))
    if case.startswith("dynamic"):
        base = max((st_rate(set_name, c) or 0) for c in FIXED)
    else:
        base = st_rate(set_name, case.split(",")[0])
    ratio = f"{rate / base:.2f}x" if base and engine != "sentence-transformers" else ""
    print(f"| {engine} | {set_name} | {case} | {rate:.0f} | {p50:.1f} | {p99:.1f} | {ratio} |")
if not have_st:
    print("\nsentence-transformers could not be installed: no ratios.")
print("\n(dynamic batching is compared with sentence-transformers at its best fixed batch size)")

for engine, worst in sorted(agreement.items()):
    print(f"\n{engine}: lowest cosine against sentence-transformers over the reference sentences {worst:.6f}", end="")
print()

print("\nGoals:")
engines = sorted({e for (e, _, _) in rows if e != "sentence-transformers"})
for engine in engines:
    for set_name in ("mixed", "long"):
        best = max((median((engine, set_name, c), "sentences_per_s") or 0) for c in FIXED)
        dynamic = median((engine, set_name, "dynamic, 64 concurrent tasks"), "sentences_per_s")
        if dynamic and best:
            ok = "met" if dynamic >= best else "NOT met"
            print(f"- {engine}, {set_name}: dynamic {dynamic:.0f}/s vs best fixed batch {best:.0f}/s "
                  f"({dynamic / best:.2f}x): {ok}")
    b8 = median((engine, "mixed", "batch 8"), "sentences_per_s")
    b32 = median((engine, "mixed", "batch 32"), "sentences_per_s")
    if b8 and b32:
        print(f"- {engine}: batch 32 {b32:.0f}/s vs batch 8 {b8:.0f}/s per sentence ({b32 / b8:.2f}x): "
              f"{'met' if b32 >= b8 else 'NOT met'}")
    solo = median((engine, "mixed", "batch 1"), "p50_ms")
    low = median((engine, "mixed", "dynamic, one task at a time"), "p50_ms")
    if solo and low:
        print(f"- {engine}: low-load p50 {low:.2f} ms vs batch 1 {solo:.2f} ms (+{low - solo:.2f} ms, goal ≤ 3): "
              f"{'met' if low - solo <= 3 else 'NOT met'}")
