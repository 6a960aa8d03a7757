//! `inferpush-worker embed`: the embedding engine on a file of sentences, its embeddings
//! written for a comparison (`scripts/gpu-check.sh`: against PyTorch) and its throughput
//! measured.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde_json::json;

use crate::config::WorkerConfig;
use crate::model::embedding::{ModelFiles, load_engine};

/// Arguments of `embed`.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbedArgs {
    /// The `text-embedding` model of the repository to run.
    #[arg(long, default_value = "all-minilm-l6-v2")]
    pub model: String,
    /// A JSON file holding an array of sentences.
    #[arg(long)]
    pub input: PathBuf,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Write the embeddings here, as a JSON array of arrays (in input order).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// After a warm-up pass, measure for at least this many seconds (whole passes over
    /// the input); 0 measures one pass.
    #[arg(long, default_value_t = 0.0)]
    pub seconds: f64,
}

/// Embeds the input (the warm-up pass), writes it if asked, then measures and prints one
/// JSON line: sentences/s and per-batch p50/p99 latency.
pub fn run(config: &WorkerConfig, args: &EmbedArgs) -> anyhow::Result<()> {
    let model = super::model(config, &args.model)?;
    let settings = config.serve().embedding(&model.card)?;
    let files = ModelFiles::of(&model, &settings.repository)?;
    let mut engine = load_engine(&files, &settings)?;
    let tokenizer = files.load_tokenizer()?;
    let text =
        std::fs::read_to_string(&args.input).with_context(|| format!("reading {}", args.input.display()))?;
    let sentences: Vec<String> =
        serde_json::from_str(&text).context("--input must hold a JSON array of strings")?;
    anyhow::ensure!(!sentences.is_empty(), "--input holds no sentences");
    let batches: Vec<Vec<&str>> =
        sentences.chunks(args.batch_size.max(1)).map(|c| c.iter().map(String::as_str).collect()).collect();

    let mut embeddings = Vec::with_capacity(sentences.len());
    for batch in &batches {
        embeddings.extend(engine.embed(&tokenizer.encode(batch)?)?);
    }
    if let Some(path) = &args.output {
        std::fs::write(path, serde_json::to_vec(&embeddings)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    let mut latencies_ms = Vec::new();
    let mut embedded = 0usize;
    let started = Instant::now();
    loop {
        for batch in &batches {
            let start = Instant::now();
            let rows = engine.embed(&tokenizer.encode(batch)?)?;
            latencies_ms.push(start.elapsed().as_secs_f64() * 1000.0);
            embedded += rows.len();
        }
        if started.elapsed().as_secs_f64() >= args.seconds {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies_ms.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "{}",
        json!({
            "engine": engine.name(),
            "device": settings.device.to_string(),
            "precision": format!("{:?}", settings.precision).to_lowercase(),
            "batch_size": args.batch_size,
            "sentences": embedded,
            "seconds": seconds,
            "sentences_per_s": embedded as f64 / seconds,
            "p50_ms": percentile(0.5),
            "p99_ms": percentile(0.99),
        })
    );
    Ok(())
}
