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

/// What one run of several sequences took.
struct Run {
    /// Tokens generated, all sequences.
    tokens: usize,
    /// From the first token of any to the last token of all.
    seconds: f64,
    /// Each one's time to first token.
    ttft: Vec<Duration>,
    /// Tokens generated once every sequence had its first, and the seconds from then to
    /// the last: the decode rate with all of them in flight.
    together: (usize, f64),
}

/// Runs `prompts` at once.
async fn run(engine: &Engine, prompts: &[Vec<u32>], max_tokens: usize) -> Run {
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
            // (when, tokens so far) at every update.
            let mut seen = Vec::new();
            while let Some(update) = received.recv().await {
                match update {
                    Update::Text { tokens, .. } => seen.push((Instant::now(), tokens)),
                    Update::Done(done) => {
                        seen.push((Instant::now(), done.completion_tokens));
                        return seen;
                    }
                    Update::Failed(reason) => panic!("{reason}"),
                }
            }
            panic!("no end")
        }));
    }
    let mut runs = Vec::new();
    for handle in handles {
        runs.push(handle.await.unwrap());
    }
    let tokens = runs.iter().map(|seen| seen.last().unwrap().1).sum();
    let first = runs.iter().map(|seen| seen[0].0).min().unwrap();
    let last = runs.iter().map(|seen| seen.last().unwrap().0).max().unwrap();
    let all_started = runs.iter().map(|seen| seen[0].0).max().unwrap();
    let after: usize = runs
        .iter()
        .map(|seen| {
            let before = seen.iter().take_while(|(when, _)| *when <= all_started).last().map_or(0, |s| s.1);
            seen.last().unwrap().1 - before
        })
        .sum();
    Run {
        tokens,
        seconds: (last - first).as_secs_f64(),
        ttft: runs.iter().map(|seen| seen[0].0 - began).collect(),
        together: (after, (last - all_started).as_secs_f64()),
    }
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
    let one = run(&engine, &[story(1)], DECODED).await;
    let single = (one.tokens - 1) as f64 / one.seconds;
    println!(
        "{}",
        json!({"engine": "inferpush", "case": "decode_1", "tokens_per_second": single, "tokens": one.tokens})
    );
    let prompts: Vec<Vec<u32>> = (2..10).map(story).collect();
    let eight = run(&engine, &prompts, DECODED).await;
    // Decoding with all eight in flight (as llama.cpp's batched bench counts generation);
    // and from the first token of any, the seven other prompts' passes included.
    let (after, seconds) = eight.together;
    let total = after as f64 / seconds;
    let with_joins = eight.tokens as f64 / eight.seconds;
    println!(
        "{}",
        json!({"engine": "inferpush", "case": "decode_8", "tokens_per_second": total, "tokens": after,
               "vs_one": total / single, "with_joins_tokens_per_second": with_joins,
               "with_joins_vs_one": with_joins / single})
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
