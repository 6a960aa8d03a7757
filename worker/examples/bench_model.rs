//! Throughput and latency of the embedding engines, and of dynamic batching under 64
//! concurrent tasks. Prints one JSON object per measurement. `make bench-model` runs it,
//! alternating with sentence-transformers, and prints the ratios.
//!
//! Usage: bench_model [MODEL_DIR] [SECONDS_PER_CASE]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use inferpush_protocol::Lane;
use inferpush_worker::model::embedding::{
    BatchSettings, Batcher, CandleEngine, Engine, ModelFiles, OrtEngine, TextTokenizer,
};
use serde_json::json;

/// Builds a fresh engine (each measurement starts from a loaded, unwarmed one).
type EngineFactory<'a> = Box<dyn Fn() -> Box<dyn Engine> + 'a>;

fn sentences() -> Vec<String> {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../tests/fixtures/minilm-reference.json")).expect("fixture");
    fixture["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .filter_map(|s| s.as_str())
        .filter(|s| s.len() < 400) // typical inputs; the over-length ones test truncation
        .map(str::to_owned)
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(engine: &str, case: &str, sentences: usize, elapsed: Duration, mut latencies: Vec<f64>) {
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "engine": engine,
            "case": case,
            "sentences_per_s": (sentences as f64 / elapsed.as_secs_f64()).round(),
            "p50_ms": (percentile(&latencies, 0.5) * 100.0).round() / 100.0,
            "p99_ms": (percentile(&latencies, 0.99) * 100.0).round() / 100.0,
        })
    );
}

fn fixed_batches(
    engine: &mut dyn Engine,
    tokenizer: &TextTokenizer,
    texts: &[String],
    size: usize,
    budget: Duration,
) {
    let mut cursor = 0;
    let batch_of = |cursor: &mut usize| -> Vec<&str> {
        (0..size)
            .map(|_| {
                *cursor = (*cursor + 1) % texts.len();
                texts[*cursor].as_str()
            })
            .collect()
    };
    // Warm up.
    engine.embed(&tokenizer.encode(&batch_of(&mut cursor)).unwrap()).unwrap();
    let (mut done, mut latencies) = (0, Vec::new());
    let started = Instant::now();
    while started.elapsed() < budget {
        let batch = batch_of(&mut cursor);
        let t = Instant::now();
        engine.embed(&tokenizer.encode(&batch).unwrap()).unwrap();
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        done += batch.len();
    }
    report(engine.name(), &format!("batch {size}"), done, started.elapsed(), latencies);
}

async fn dynamic(
    engine: Box<dyn Engine>,
    tokenizer: TextTokenizer,
    texts: &[String],
    budget: Duration,
    max_batch_size: usize,
) {
    let name = engine.name();
    let settings =
        BatchSettings { max_batch_size, max_batch_delay: Duration::from_millis(2), max_batch_texts: 256 };
    let batcher = Batcher::spawn(engine, tokenizer, settings);
    let started = Instant::now();
    let clients: Vec<_> = (0..64)
        .map(|client| {
            let (batcher, texts) = (batcher.clone(), texts.to_vec());
            tokio::spawn(async move {
                let (mut done, mut latencies, mut i) = (0, Vec::new(), client);
                while started.elapsed() < budget {
                    i = (i + 1) % texts.len();
                    let t = Instant::now();
                    batcher.embed(vec![texts[i].clone()], Lane::Main).await.unwrap();
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    done += 1;
                }
                (done, latencies)
            })
        })
        .collect();
    let (mut done, mut latencies) = (0, Vec::new());
    for client in clients {
        let (n, l) = client.await.unwrap();
        done += n;
        latencies.extend(l);
    }
    let case = format!("dynamic (max {max_batch_size}), 64 concurrent tasks");
    report(name, &case, done, started.elapsed(), latencies);
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "models".into()));
    let seconds: f64 = args.next().map(|s| s.parse().expect("seconds")).unwrap_or(5.0);
    let budget = Duration::from_secs_f64(seconds);
    let files = ModelFiles::under(&dir);
    files.check().expect("model files");
    let texts = sentences();
    let tokenizer = || TextTokenizer::load(&files.dir.join("tokenizer.json")).unwrap();
    let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
    let engines: Vec<(&str, EngineFactory)> = vec![
        (
            "ort",
            Box::new(|| {
                Box::new(OrtEngine::load(&files.dir.join("model.onnx"), &files.ort_library, threads).unwrap())
            }),
        ),
        (
            "candle",
            Box::new(|| {
                Box::new(
                    CandleEngine::load(&files.dir, candle_core::Device::Cpu, candle_core::DType::F32)
                        .unwrap(),
                )
            }),
        ),
    ];
    for (_, make) in &engines {
        let mut engine = make();
        for size in [1, 8, 32] {
            fixed_batches(engine.as_mut(), &tokenizer(), &texts, size, budget);
        }
        for max_batch_size in [8, 32] {
            dynamic(make(), tokenizer(), &texts, budget, max_batch_size).await;
        }
    }
}
