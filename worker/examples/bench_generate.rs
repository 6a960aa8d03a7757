//! Generation speed of the worker's engine on this machine, in one run beside llama.cpp
//! (`scripts/bench_generate.py`, same threads): one stream's decode tokens/s, the total of 8
//! streams decoded together (medians of 5 rounds of one then eight, and the median of each
//! round's ratio), and the time to first token of a 100-token prompt (p50 of 10).
//! Prints one JSON object per measurement. `make bench-generate` runs both and the ratios.
//!
//! Usage: bench_generate GGUF

use std::sync::Arc;

use candle_core::Device;
use candle_core::quantized::gguf_file::Content;
use inferpush_gguf::ModelText;
use inferpush_worker::model::generation::engine::Engine;
use inferpush_worker::model::generation::llama::Llama;
use inferpush_worker::offline::generate::{DecodeRun, decode_together};
use serde_json::json;

const DECODED: usize = 128;
const ROUNDS: usize = 5;

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

async fn run(engine: &Engine, prompts: &[Vec<u32>], max_tokens: usize) -> DecodeRun {
    decode_together(engine, prompts, max_tokens).await.unwrap()
}

#[tokio::main]
async fn main() {
    let path = std::env::args().nth(1).expect("usage: bench_generate GGUF");
    let mut file = std::fs::File::open(&path).unwrap();
    let content = Content::read(&mut file).unwrap();
    let text = Arc::new(ModelText::of(&content).unwrap());
    let llama = Llama::load(&content, &mut file, &Device::Cpu).unwrap();
    let engine = Engine::start(llama, Arc::new(text.tokenizer.clone()), 8);
    let story = |i: usize| {
        let messages =
            [json!({"role": "user", "content": format!("Write a long story about dragon number {i}.")})];
        text.tokenizer.encode(&text.chat_prompt(&messages).unwrap()).unwrap()
    };
    // Warm-up, then one stream and eight in turn, ROUNDS times: the machines are shared and
    // their speed drifts, so each round's eight are compared with that round's one, and the
    // medians are reported (ignoring the end of sequence would need a forced length: the
    // stories are long enough for 128 tokens; greedy, so every round does the same work).
    run(&engine, &[story(0)], 8).await;
    let prompts: Vec<Vec<u32>> = (2..10).map(story).collect();
    let (mut singles, mut totals, mut joined, mut ratios, mut joined_ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let one = run(&engine, &[story(1)], DECODED).await;
        let single = (one.tokens - 1) as f64 / one.seconds;
        let eight = run(&engine, &prompts, DECODED).await;
        // Decoding with all eight in flight (as llama.cpp's batched bench counts generation);
        // and from the first token of any, the seven other prompts' passes included.
        let (after, seconds) = eight.together;
        let total = after as f64 / seconds;
        let with_joins = eight.tokens as f64 / eight.seconds;
        singles.push(single);
        totals.push(total);
        joined.push(with_joins);
        ratios.push(total / single);
        joined_ratios.push(with_joins / single);
    }
    println!(
        "{}",
        json!({"engine": "inferpush", "case": "decode_1", "tokens_per_second": median(&singles),
               "rounds": singles})
    );
    println!(
        "{}",
        json!({"engine": "inferpush", "case": "decode_8", "tokens_per_second": median(&totals),
               "vs_one": median(&ratios), "with_joins_tokens_per_second": median(&joined),
               "with_joins_vs_one": median(&joined_ratios), "rounds": totals, "rounds_vs_one": ratios})
    );
    let hundred: Vec<u32> =
        text.tokenizer.encode(&"The quick brown fox jumps over the lazy dog. ".repeat(10)).unwrap()[..100]
            .to_vec();
    let mut firsts = Vec::new();
    for _ in 0..10 {
        firsts.extend(run(&engine, std::slice::from_ref(&hundred), 1).await.ttft);
    }
    firsts.sort();
    println!(
        "{}",
        json!({"engine": "inferpush", "case": "ttft_100", "p50_ms": firsts[5].as_secs_f64() * 1000.})
    );
}
