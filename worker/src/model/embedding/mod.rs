//! `all-minilm-l6-v2`: sentence embeddings served like an inference server serves them.
//!
//! Two engines behind one trait (ONNX Runtime and candle), chosen at start; a dynamic
//! batcher on its own thread owns the engine and runs texts in passes of similar length
//! within a token budget ([`plan`]); each task gets exactly its own rows.

mod batcher;
mod candle_engine;
mod engine;
mod ort_engine;
pub mod plan;
mod tokenize;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use inferpush_protocol::catalogue::minilm;
use serde_json::{Value, json};

pub use batcher::{BatchError, BatchSettings, Batcher, Embedded};
pub use candle_engine::CandleEngine;
pub use engine::Engine;
pub use ort_engine::OrtEngine;
pub use plan::{PassLimits, embed_all};
pub use tokenize::{Encoded, MAX_TOKENS, TextTokenizer, Tokens};

use super::device::{DeviceChoice, Precision};
use super::{Model, ModelError, Run};

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
    /// Threads for the forward pass (ONNX Runtime).
    pub threads: usize,
    /// Where candle runs the network.
    pub device: DeviceChoice,
    /// candle's precision.
    pub precision: Precision,
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
            dir: model_dir.join(minilm::NAME),
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

/// Builds the engine `settings` name (resolving `auto`) on its device.
pub fn load_engine(files: &ModelFiles, settings: &EmbeddingSettings) -> anyhow::Result<Box<dyn Engine>> {
    files.check()?;
    let on_cpu = !settings.device.is_cuda();
    let use_ort = match settings.engine {
        EngineChoice::Ort => {
            anyhow::ensure!(
                on_cpu,
                "engine `ort` runs on the CPU only; use --engine candle (or auto) with --device {}",
                settings.device
            );
            anyhow::ensure!(
                files.has_ort(),
                "engine `ort` needs {} and {}: run `scripts/fetch-model.sh`",
                files.dir.join("model.onnx").display(),
                files.ort_library.display()
            );
            true
        }
        // ONNX Runtime is the faster CPU engine; a GPU means candle's CUDA backend.
        EngineChoice::Auto => on_cpu && settings.precision == Precision::F32 && files.has_ort(),
        EngineChoice::Candle => false,
    };
    if use_ort {
        anyhow::ensure!(settings.precision == Precision::F32, "engine `ort` runs in f32 only");
        Ok(Box::new(OrtEngine::load(&files.dir.join("model.onnx"), &files.ort_library, settings.threads)?))
    } else {
        let device = settings.device.open()?;
        Ok(Box::new(CandleEngine::load(&files.dir, device, settings.precision.dtype())?))
    }
}

/// Sentences whose embeddings the two engines must agree on before ONNX Runtime is used.
const PROBES: [&str; 3] = ["Hello, world!", "The quick brown fox jumps over the lazy dog.", "naïve café ☕"];

/// Checks an engine other than the reference (candle, f32, CPU) against it on a few
/// sentences: a freshly built ONNX graph, a GPU, or f16 must agree before serving.
fn check_against_reference(
    files: &ModelFiles,
    engine: &mut dyn Engine,
    tokenizer: &TextTokenizer,
    min_cosine: f32,
) -> anyhow::Result<()> {
    let batch = tokenizer.encode(&PROBES)?;
    let mut reference = CandleEngine::load(&files.dir, candle_core::Device::Cpu, candle_core::DType::F32)?;
    let want = reference.embed(&batch)?;
    let got = engine.embed(&batch)?;
    let worst = want.iter().zip(&got).map(|(a, b)| cosine(a, b)).fold(1.0f32, f32::min);
    anyhow::ensure!(
        worst >= min_cosine,
        "engine `{}` disagrees with candle on the CPU (cosine {worst} < {min_cosine}); for `ort`, rebuild the \
         graph with scripts/fetch-model.sh",
        engine.name()
    );
    tracing::info!(engine = engine.name(), min_cosine = worst, "engine agrees with candle on the CPU");
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
        let mut engine = load_engine(&files, settings)?;
        let tokenizer = TextTokenizer::load(&files.dir.join("tokenizer.json"))?;
        let is_reference =
            engine.name() == "candle" && !settings.device.is_cuda() && settings.precision == Precision::F32;
        if !is_reference {
            let min_cosine = if settings.precision == Precision::F16 { 0.99 } else { 0.999 };
            check_against_reference(&files, engine.as_mut(), &tokenizer, min_cosine)?;
        }
        let name = engine.name();
        tracing::info!(
            engine = name,
            device = %settings.device,
            precision = ?settings.precision,
            batch = ?settings.batch,
            "all-minilm-l6-v2 loaded"
        );
        Ok(Self { batcher: Batcher::spawn(engine, tokenizer, settings.batch), engine: name })
    }

    /// The engine in use.
    pub fn engine(&self) -> &'static str {
        self.engine
    }
}

#[async_trait]
impl Model for EmbeddingModel {
    async fn infer(&self, input: &Value, run: Run) -> Result<Value, ModelError> {
        let texts = minilm::texts(input).map_err(|e| ModelError::InvalidInput(e.to_string()))?;
        let texts = texts.into_iter().map(str::to_owned).collect();
        let embedded = self.batcher.embed(texts, run.lane, run.deadline).await.map_err(|e| match e {
            BatchError::Expired => ModelError::Expired,
            BatchError::Failed(reason) => ModelError::Failed(reason),
        })?;
        Ok(json!({"embeddings": embedded.rows, "dimensions": minilm::DIMENSIONS, "tokens": embedded.tokens}))
    }
}
