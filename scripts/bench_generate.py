"""llama.cpp's side of `make bench-generate` (llama-cpp-python, built from source, same
threads as the worker's engine): one stream's greedy decode tokens/s over the same story
prompt, and the time to first token of a 100-token prompt (p50 of 10). One JSON object per
measurement, as worker/examples/bench_generate.rs prints them."""

import json
import sys
import time

import jinja2
import llama_cpp

DECODED = 128


def main(gguf, threads):
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=1024, n_threads=int(threads), n_batch=512, verbose=False)
    render = jinja2.Environment().from_string(llm.metadata["tokenizer.chat_template"])
    prompt = render.render(messages=[{"role": "user", "content": "Write a long story about dragon number 1."}],
                           add_generation_prompt=True)
    ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    llm.eval(ids)
    first = time.perf_counter()
    for _ in range(DECODED - 1):
        llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])
    seconds = time.perf_counter() - first
    print(json.dumps({"engine": "llama.cpp", "case": "decode_1", "tokens_per_second": (DECODED - 1) / seconds}))
    hundred = llm.tokenize(b"The quick brown fox jumps over the lazy dog. " * 10, add_bos=False)[:100]
    firsts = []
    for _ in range(10):
        llm.reset()
        began = time.perf_counter()
        llm.eval(hundred)
        int(llm.scores[llm.n_tokens - 1].argmax())
        firsts.append(time.perf_counter() - began)
    firsts.sort()
    print(json.dumps({"engine": "llama.cpp", "case": "ttft_100", "p50_ms": firsts[5] * 1000}))


if __name__ == "__main__":
    main(*sys.argv[1:])
