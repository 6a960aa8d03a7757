//! `all-minilm-l6-v2`: sentence embeddings served like an inference server serves them.
//!
//! Two engines behind one trait (ONNX Runtime and candle), chosen at start; a dynamic
//! batcher on its own thread owns the engine; each task gets exactly its own rows.

mod batcher;
mod candle_engine;
mod engine;
mod ort_engine;
mod tokenize;

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use inferpush_protocol::catalogue;
use serde_json::{Value, json};

pub use batcher::{BatchSettings, Batcher};
pub use candle_engine::CandleEngine;
pub use engine::Engine;
pub use ort_engine::OrtEngine;
pub use tokenize::{Encoded, MAX_TOKENS, TextTokenizer};

use super::{Model, ModelError};

/// Which engine runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    /// ONNX Runtime when its library and graph are present, else candle.
    Auto,
    /// ONNX Runtime (`models/onnxruntime/libonnxruntime.so`, `model.onnx`).
    Ort,
    /// candle, pure Rust.
    Candle,
}

/// Where the files are and how to run them.
#[derive(Debug, Clone)]
pub struct EmbeddingSettings {
    /// Folder holding `all-minilm-l6-v2/` and `onnxruntime/`.
    pub model_dir: PathBuf,
    /// Engine to use.
    pub engine: EngineChoice,
    /// Threads for the forward pass.
    pub threads: usize,
    /// Batching.
    pub batch: BatchSettings,
}

/// The files of the model, by role.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// `config.json`, `tokenizer.json`, `model.safetensors`, `model.onnx`.
    pub dir: PathBuf,
    /// ONNX Runtime's shared library.
    pub ort_library: PathBuf,
}

impl ModelFiles {
    /// The files under `model_dir`.
    pub fn under(model_dir: &Path) -> Self {
        Self {
            dir: model_dir.join(catalogue::MINILM),
            ort_library: model_dir.join("onnxruntime").join("libonnxruntime.so"),
        }
    }

    /// Fails, saying what to run, when the base files are missing.
    pub fn check(&self) -> anyhow::Result<()> {
        for file in ["config.json", "tokenizer.json", "model.safetensors"] {
            let path = self.dir.join(file);
            anyhow::ensure!(
                path.exists(),
                "model file {} is missing: run `scripts/fetch-model.sh` (or `make models`) first",
                path.display()
            );
        }
        Ok(())
    }

    /// True when the ONNX Runtime engine can run.
    pub fn has_ort(&self) -> bool {
        self.dir.join("model.onnx").exists() && self.ort_library.exists()
    }
}

/// Builds the engine `choice` names (resolving `auto`).
pub fn load_engine(
    files: &ModelFiles,
    choice: EngineChoice,
    threads: usize,
) -> anyhow::Result<Box<dyn Engine>> {
    files.check()?;
    let use_ort = match choice {
        EngineChoice::Ort => {
            anyhow::ensure!(
                files.has_ort(),
                "engine `ort` needs {} and {}: run `scripts/fetch-model.sh`",
                files.dir.join("model.onnx").display(),
                files.ort_library.display()
            );
            true
        }
        EngineChoice::Auto => files.has_ort(),
        EngineChoice::Candle => false,
    };
    if use_ort {
        Ok(Box::new(OrtEngine::load(&files.dir.join("model.onnx"), &files.ort_library, threads)?))
    } else {
        Ok(Box::new(CandleEngine::load(&files.dir, candle_core::Device::Cpu)?))
    }
}

/// Sentences whose embeddings the two engines must agree on before ONNX Runtime is used.
const PROBES: [&str; 3] = ["Hello, world!", "The quick brown fox jumps over the lazy dog.", "naïve café ☕"];

/// Checks a freshly built ONNX graph against candle on a few sentences.
fn check_against_candle(
    files: &ModelFiles,
    engine: &mut dyn Engine,
    tokenizer: &TextTokenizer,
) -> anyhow::Result<()> {
    let batch = tokenizer.encode(&PROBES)?;
    let mut reference = CandleEngine::load(&files.dir, candle_core::Device::Cpu)?;
    let want = reference.embed(&batch)?;
    let got = engine.embed(&batch)?;
    let worst = want.iter().zip(&got).map(|(a, b)| cosine(a, b)).fold(1.0f32, f32::min);
    anyhow::ensure!(
        worst >= 0.9999,
        "the ONNX graph disagrees with candle (cosine {worst}); rebuild it with scripts/fetch-model.sh"
    );
    tracing::info!(min_cosine = worst, "ONNX Runtime engine agrees with candle");
    Ok(())
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(f32::MIN_POSITIVE)
}

/// The served model: validates input, hands texts to the batcher, shapes the output.
pub struct EmbeddingModel {
    batcher: Batcher,
    engine: &'static str,
}

impl EmbeddingModel {
    /// Loads the files, picks the engine, checks it, and starts the batching thread.
    pub fn load(settings: &EmbeddingSettings) -> anyhow::Result<Self> {
        let files = ModelFiles::under(&settings.model_dir);
        let mut engine = load_engine(&files, settings.engine, settings.threads)?;
        let tokenizer = TextTokenizer::load(&files.dir.join("tokenizer.json"))?;
        if engine.name() == "ort" {
            check_against_candle(&files, engine.as_mut(), &tokenizer)?;
        }
        let name = engine.name();
        tracing::info!(engine = name, batch = ?settings.batch, "all-minilm-l6-v2 loaded");
        Ok(Self { batcher: Batcher::spawn(engine, tokenizer, settings.batch), engine: name })
    }

    /// The engine in use.
    pub fn engine(&self) -> &'static str {
        self.engine
    }
}

impl Model for EmbeddingModel {
    fn name(&self) -> &'static str {
        catalogue::MINILM
    }

    fn infer<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<Value, ModelError>> {
        Box::pin(async move {
            let texts = catalogue::texts(input).map_err(|e| ModelError::InvalidInput(e.to_string()))?;
            let texts = texts.into_iter().map(str::to_owned).collect();
            let embeddings = self.batcher.embed(texts).await.map_err(ModelError::Failed)?;
            Ok(json!({"embeddings": embeddings, "dimensions": catalogue::MINILM_DIMENSIONS}))
        })
    }
}
