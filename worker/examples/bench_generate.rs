//! Generation speed of the worker's engine on this machine, in one run beside llama.cpp
//! (`scripts/bench_generate.py`, same threads): one stream's decode tokens/s, the total of 8
//! streams decoded together, and the time to first token of a 100-token prompt (p50 of 10).
//! Prints one JSON object per measurement. `make bench-generate` runs both and the ratios.
//!
//! Usage: bench_generate GGUF

use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use candle_core::quantized::gguf_file::Content;
use inferpush_gguf::ModelText;
use inferpush_worker::model::generation::engine::{Engine, Job, Sampling, Update};
use inferpush_worker::model::generation::llama::Llama;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const DECODED: usize = 128;

fn greedy(max_tokens: usize) -> Sampling {
    Sampling { max_tokens, temperature: 0., top_p: None, seed: 0, stop: Vec::new() }
}

/// Runs `prompts` at once; answers (tokens generated, seconds from the first token of any to
/// the last token of all, each one's time to first token).
async fn run(engine: &Engine, prompts: &[Vec<u32>], max_tokens: usize) -> (usize, f64, Vec<Duration>) {
    let began = Instant::now();
    let mut handles = Vec::new();
    for prompt in prompts {
        let (updates, mut received) = mpsc::unbounded_channel();
        let job = Job {
            prompt: prompt.clone(),
            sampling: greedy(max_tokens),
            updates,
            cancel: CancellationToken::new(),
        };
        assert!(engine.submit(job).is_ok());
        handles.push(tokio::spawn(async move {
            let mut first = None;
            while let Some(update) = received.recv().await {
                match update {
                    Update::Text { .. } => {
                        first.get_or_insert_with(Instant::now);
                    }
                    Update::Done(done) => {
                        return (done.completion_tokens, first.unwrap_or_else(Instant::now), Instant::now());
                    }
                    Update::Failed(reason) => panic!("{reason}"),
                }
            }
            panic!("no end")
        }));
    }
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    let tokens = results.iter().map(|r| r.0).sum();
    let first = results.iter().map(|r| r.1).min().unwrap();
    let last = results.iter().map(|r| r.2).max().unwrap();
    let ttft = results.iter().map(|r| r.1 - began).collect();
    (tokens, (last - first).as_secs_f64(), ttft)
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
    // Warm-up, then one stream (ignoring the end of sequence would need a forced length:
    // the stories are long enough for 128 tokens).
    run(&engine, &[story(0)], 8).await;
    let (tokens, seconds, _) = run(&engine, &[story(1)], DECODED).await;
    let single = (tokens - 1) as f64 / seconds;
    println!(
        "{}",
        json!({"engine": "inferpush", "case": "decode_1", "tokens_per_second": single, "tokens": tokens})
    );
    let prompts: Vec<Vec<u32>> = (2..10).map(story).collect();
    let (tokens, seconds, _) = run(&engine, &prompts, DECODED).await;
    let total = tokens as f64 / seconds;
    println!(
        "{}",
        json!({"engine": "inferpush", "case": "decode_8", "tokens_per_second": total, "tokens": tokens, "vs_one": total / single})
    );
    let hundred: Vec<u32> =
        text.tokenizer.encode(&"The quick brown fox jumps over the lazy dog. ".repeat(10)).unwrap()[..100]
            .to_vec();
    let mut firsts = Vec::new();
    for _ in 0..10 {
        firsts.extend(run(&engine, std::slice::from_ref(&hundred), 1).await.2);
    }
    firsts.sort();
    println!(
        "{}",
        json!({"engine": "inferpush", "case": "ttft_100", "p50_ms": firsts[5].as_secs_f64() * 1000.})
    );
}
