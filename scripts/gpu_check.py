"""The PyTorch half of scripts/gpu-check.sh.

`make`: builds a BERT with all-MiniLM-L6-v2's configuration and random weights (the
real weights do not travel to the GPU machine), saves it as safetensors where the
worker looks for a model, and writes the test sentences and PyTorch's embeddings of them.
`bench`: PyTorch's sentences/s on the same sentences and batch sizes as the worker.
`report`: cosine of the worker's embeddings against PyTorch's (must be >= 0.999 in f32),
and the throughput table with ratios; the generation check's agreement (the worker's
`generate`, see gpu-check.sh) and tokens/s.

Needs torch, transformers and safetensors (the GPU machine has them); no network.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

# The sentences of the CPU reference fixture: short, long, over-length, odd characters.
FIXTURE = Path(__file__).resolve().parent.parent / "worker/tests/fixtures/minilm-reference.json"
SENTENCES = json.loads(FIXTURE.read_text())["sentences"]


def load(model_dir, device, half):
    import torch
    from transformers import BertModel, PreTrainedTokenizerFast

    torch.backends.cuda.matmul.allow_tf32 = False  # a true f32 reference
    model = BertModel.from_pretrained(model_dir, add_pooling_layer=False).to(device).eval()
    if half:
        model = model.half()
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(Path(model_dir) / "tokenizer.json"))
    tokenizer.pad_token = "[PAD]"
    return torch, model, tokenizer


def embed(torch, model, tokenizer, sentences, batch_size, device):
    out = []
    for start in range(0, len(sentences), batch_size):
        encoded = tokenizer(
            sentences[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=256,
            return_tensors="pt",
        ).to(device)
        with torch.inference_mode():
            hidden = model(**encoded).last_hidden_state.float()
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        out.append(torch.nn.functional.normalize(mean, dim=1).cpu())
    return torch.cat(out)


def make(args):
    import torch
    from safetensors.torch import save_file
    from transformers import BertConfig, BertModel

    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.config, model_dir / "config.json")
    shutil.copy(args.tokenizer, model_dir / "tokenizer.json")
    torch.manual_seed(7)
    config = BertConfig.from_json_file(args.config)
    model = BertModel(config, add_pooling_layer=False).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, model_dir / "model.safetensors")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sentences.json").write_text(json.dumps(SENTENCES))
    # Throughput on typical inputs (the over-length ones would pad every batch to 256 tokens).
    typical = [s for s in SENTENCES if len(s) < 400]
    bench = [typical[i % len(typical)] for i in range(args.bench_sentences)]
    (out / "bench-sentences.json").write_text(json.dumps(bench))
    torch_, model, tokenizer = load(model_dir, args.device, half=False)
    reference = embed(torch_, model, tokenizer, SENTENCES, 4, args.device)
    (out / "torch-f32.json").write_text(json.dumps(reference.tolist()))
    print(f"random BERT ({sum(p.numel() for p in model.parameters())} parameters) saved in {model_dir}")


def bench(args):
    sentences = json.loads(Path(args.input).read_text())
    torch, model, tokenizer = load(args.model_dir, args.device, half=args.precision == "f16")
    embed(torch, model, tokenizer, sentences, args.batch_size, args.device)  # warm-up
    latencies, embedded, started = [], 0, time.perf_counter()
    while True:
        for start in range(0, len(sentences), args.batch_size):
            chunk = sentences[start : start + args.batch_size]
            t = time.perf_counter()
            embed(torch, model, tokenizer, chunk, args.batch_size, args.device)
            latencies.append((time.perf_counter() - t) * 1000)
            embedded += len(chunk)
        if time.perf_counter() - started >= args.seconds:
            break
    seconds = time.perf_counter() - started
    latencies.sort()
    print(json.dumps({
        "engine": "pytorch",
        "device": args.device,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "sentences": embedded,
        "seconds": seconds,
        "sentences_per_s": embedded / seconds,
        "p50_ms": latencies[round((len(latencies) - 1) * 0.5)],
        "p99_ms": latencies[round((len(latencies) - 1) * 0.99)],
    }))


def cosines(a, b):
    import math

    out = []
    for x, y in zip(a, b):
        dot = sum(p * q for p, q in zip(x, y))
        out.append(dot / (math.sqrt(sum(p * p for p in x)) * math.sqrt(sum(q * q for q in y))))
    return out


def report(args):
    out = Path(args.out)
    reference = json.loads((out / "torch-f32.json").read_text())
    ok = True
    lines = ["## Agreement with PyTorch (same random weights, same sentences)", ""]
    for precision, threshold in (("f32", 0.999), ("f16", 0.99)):
        path = out / f"worker-{precision}.json"
        if not path.exists():
            continue
        got = json.loads(path.read_text())
        if len(got) != len(reference):
            lines.append(f"- {precision}: {len(got)} embeddings for {len(reference)} sentences: FAIL")
            ok = False
            continue
        worst = min(cosines(got, reference))
        passed = worst >= threshold
        ok &= passed
        lines.append(f"- worker {precision} vs PyTorch f32: min cosine {worst:.7f} (>= {threshold}: {'pass' if passed else 'FAIL'})")
    rows = [json.loads(line) for line in (out / "bench.jsonl").read_text().splitlines() if line.strip()]
    lines += ["", "## Throughput (sentences/s; p50 latency per batch)", "",
              "| precision | batch | worker | PyTorch | worker / PyTorch | worker p50 ms | PyTorch p50 ms |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    cases = sorted({(r["precision"], r["batch_size"]) for r in rows})
    for precision, batch in cases:
        def pick(engine):
            found = [r for r in rows if r["precision"] == precision and r["batch_size"] == batch
                     and (r["engine"] == "pytorch") == (engine == "pytorch")]
            return found[0] if found else None
        worker, torch_row = pick("worker"), pick("pytorch")
        if not worker or not torch_row:
            continue
        ratio = worker["sentences_per_s"] / torch_row["sentences_per_s"]
        lines.append(f"| {precision} | {batch} | {worker['sentences_per_s']:.0f} | {torch_row['sentences_per_s']:.0f} | "
                     f"{ratio:.2f}x | {worker['p50_ms']:.2f} | {torch_row['p50_ms']:.2f} |")
    generated = out / "generate.jsonl"
    if generated.exists():
        rows = [json.loads(line) for line in generated.read_text().splitlines() if line.strip()]
        lines += ["", "## Generation: random-weight SmolLM2, the device's network against the CPU's", ""]
        for row in rows:
            if row["case"] == "agreement":
                passed = row["top1_agreement"] >= args.agreement
                ok &= passed
                lines.append(f"- teacher-forced on the CPU's greedy tokens: top-1 agrees at {row['top1_agree']} of "
                             f"{row['positions']} positions ({row['top1_agreement']:.1%}, >= {args.agreement:.0%}: "
                             f"{'pass' if passed else 'FAIL'}); largest logit difference {row['max_logit_diff']:.4f}; "
                             f"greedy text equal for {row['greedy_equal']} of {row['prompts']} prompts")
        lines += ["", "| device | streams | tokens/s | time to first token p50 ms |", "| --- | --- | --- | --- |"]
        for row in rows:
            if row["case"] == "decode":
                lines.append(f"| {row['device']} | {row['streams']} | {row['tokens_per_second']:.1f} | {row['ttft_p50_ms']:.1f} |")
    elif args.agreement > 0:
        lines += ["", "## Generation: not run"]
    text = "\n".join(lines)
    (out / "report.md").write_text(text + "\n")
    print(text)
    print("\nGPU CHECK:", "PASSED" if ok else "FAILED")
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make")
    p.add_argument("--config", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--bench-sentences", type=int, default=512)
    p = sub.add_parser("bench")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--precision", choices=["f32", "f16"], default="f32")
    p.add_argument("--device", default="cuda")
    p.add_argument("--seconds", type=float, default=3.0)
    p = sub.add_parser("report")
    p.add_argument("--out", required=True)
    p.add_argument("--agreement", type=float, default=0.9, help="least top-1 agreement of generation")
    args = parser.parse_args()
    if args.command == "make":
        make(args)
    elif args.command == "bench":
        bench(args)
    else:
        sys.exit(report(args))


if __name__ == "__main__":
    main()
