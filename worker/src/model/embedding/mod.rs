//! The `text-embedding` kind: sentence embeddings served like an inference server serves
//! them, for any card of this kind (all-MiniLM-L6-v2 is the one inferpush ships).
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
use inferpush_protocol::catalogue::text_embedding;
use inferpush_repository::Pooling;
use serde_json::{Value, json};

pub use batcher::{BatchError, BatchSettings, Batcher, Embedded};
pub use candle_engine::CandleEngine;
pub use engine::Engine;
pub use ort_engine::OrtEngine;
pub use plan::{PassLimits, embed_all};
pub use tokenize::{Encoded, TextTokenizer, Tokens};

use super::device::{DeviceChoice, Precision};
use super::{Model, ModelError, Run};

/// Which engine runs the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    /// ONNX Runtime when its library and graph are present, else candle.
    Auto,
    /// ONNX Runtime (`models/onnxruntime/libonnxruntime.so` and the card's graph).
    Ort,
    /// candle, pure Rust.
    Candle,
}

/// How embedding models are run on this worker: the card's preferences, and what the
/// worker's own settings override.
#[derive(Debug, Clone)]
pub struct EmbeddingSettings {
    /// The model repository's folder (ONNX Runtime's library is in its `onnxruntime/`).
    pub repository: PathBuf,
    /// Engine to use (`auto` takes the card's preference).
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

/// A `text-embedding` card's files, by role, and how its vectors are made.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The card's name.
    pub name: String,
    /// The card's folder.
    pub dir: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer_json: PathBuf,
    /// The ONNX graph and its SHA-256, if the card has one.
    pub onnx: Option<(PathBuf, String)>,
    /// The safetensors weights and their SHA-256, with the BERT `config.json`, if the card has them.
    pub safetensors: Option<(PathBuf, String, PathBuf)>,
    /// ONNX Runtime's shared library.
    pub ort_library: PathBuf,
    /// How token vectors become one.
    pub pooling: Pooling,
    /// Whether vectors are scaled to unit length.
    pub normalize: bool,
    /// The vectors' size.
    pub dimensions: usize,
    /// Tokens read per text.
    pub max_tokens: usize,
}

impl ModelFiles {
    /// The files of a `text-embedding` card of the repository in `repository`.
    pub fn of(model: &inferpush_repository::Model, repository: &Path) -> anyhow::Result<Self> {
        let card = &model.card;
        let section = card
            .text_embedding
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("`{}` is not a text-embedding model", card.name))?;
        let with_sha =
            |path: &String| (model.file(path), card.sha256_of(path).unwrap_or_default().to_owned());
        Ok(Self {
            name: card.name.clone(),
            dir: model.dir.clone(),
            tokenizer_json: model.file(&section.tokenizer),
            onnx: section.onnx.as_ref().map(with_sha),
            safetensors: section.safetensors.as_ref().zip(section.config.as_ref()).map(
                |(weights, config)| {
                    let (path, sha) = with_sha(weights);
                    (path, sha, model.file(config))
                },
            ),
            ort_library: repository.join("onnxruntime").join("libonnxruntime.so"),
            pooling: section.pooling,
            normalize: section.normalize,
            dimensions: section.dimensions,
            max_tokens: card.limits.max_tokens,
        })
    }

    /// The files of the shipped `all-minilm-l6-v2` card under the repository `repository`
    /// (tests and benchmarks).
    pub fn under(repository: &Path) -> Self {
        let card = repository.join("all-minilm-l6-v2").join(inferpush_repository::CARD_FILE);
        let text = std::fs::read_to_string(&card).unwrap_or_else(|e| panic!("{}: {e}", card.display()));
        let card =
            inferpush_repository::Card::parse(&text).unwrap_or_else(|e| panic!("{}: {e:?}", card.display()));
        let model =
            inferpush_repository::Model { card, dir: repository.join("all-minilm-l6-v2"), signature: None };
        Self::of(&model, repository).expect("a text-embedding card")
    }

    /// Fails, saying what to run, when a file the card names is missing.
    pub fn check(&self) -> anyhow::Result<()> {
        let mut files = vec![&self.tokenizer_json];
        files.extend(self.onnx.as_ref().map(|(path, _)| path));
        files.extend(self.safetensors.iter().flat_map(|(weights, _, config)| [weights, config]));
        for path in files {
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
        self.onnx.as_ref().is_some_and(|(path, _)| path.exists()) && self.ort_library.exists()
    }

    /// The tokenizer, truncating at the card's `max_tokens`.
    pub fn load_tokenizer(&self) -> anyhow::Result<TextTokenizer> {
        TextTokenizer::load(&self.tokenizer_json, self.max_tokens)
    }

    /// The SHA-256 of the weights `engine` loads.
    pub fn weights_of(&self, engine: &str) -> Option<String> {
        match engine {
            "ort" => self.onnx.as_ref().map(|(_, sha)| sha.clone()),
            _ => self.safetensors.as_ref().map(|(_, sha, _)| sha.clone()),
        }
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
                "engine `ort` needs the card's `onnx` graph and {}: run `scripts/fetch-model.sh`",
                files.ort_library.display()
            );
            true
        }
        // ONNX Runtime is the faster CPU engine; a GPU means candle's CUDA backend. A card
        // with only a graph has only ONNX Runtime.
        EngineChoice::Auto => {
            (on_cpu && settings.precision == Precision::F32 && files.has_ort()) || files.safetensors.is_none()
        }
        EngineChoice::Candle => false,
    };
    if use_ort {
        anyhow::ensure!(on_cpu, "`{}` has only an ONNX graph, which runs on the CPU only", files.name);
        anyhow::ensure!(settings.precision == Precision::F32, "engine `ort` runs in f32 only");
        let (graph, _) = files.onnx.as_ref().expect("has_ort or no safetensors: a graph");
        Ok(Box::new(
            OrtEngine::load(graph, &files.ort_library, settings.threads)?
                .pooled(files.pooling, files.normalize),
        ))
    } else {
        anyhow::ensure!(
            files.safetensors.is_some(),
            "`{}` has no safetensors weights for candle",
            files.name
        );
        let device = settings.device.open()?;
        Ok(Box::new(CandleEngine::load(files, device, settings.precision.dtype())?))
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
    let mut reference = CandleEngine::load(files, candle_core::Device::Cpu, candle_core::DType::F32)?;
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
    name: String,
    limits: inferpush_repository::Limits,
    dimensions: usize,
    weights_sha256: Option<String>,
}

impl EmbeddingModel {
    /// Loads the card's files, picks the engine, checks it against the reference when the
    /// card has one to check against, and starts the batching thread.
    pub fn load(model: &inferpush_repository::Model, settings: &EmbeddingSettings) -> anyhow::Result<Self> {
        let files = ModelFiles::of(model, &settings.repository)?;
        let mut engine = load_engine(&files, settings)?;
        let tokenizer = files.load_tokenizer()?;
        let is_reference =
            engine.name() == "candle" && !settings.device.is_cuda() && settings.precision == Precision::F32;
        if !is_reference && files.safetensors.is_some() {
            let min_cosine = if settings.precision == Precision::F16 { 0.99 } else { 0.999 };
            check_against_reference(&files, engine.as_mut(), &tokenizer, min_cosine)?;
        }
        let name = engine.name();
        tracing::info!(
            model = files.name,
            engine = name,
            device = %settings.device,
            precision = ?settings.precision,
            batch = ?settings.batch,
            "embedding model loaded"
        );
        Ok(Self {
            batcher: Batcher::spawn(engine, tokenizer, settings.batch, &files.name),
            engine: name,
            weights_sha256: files.weights_of(name),
            name: files.name,
            limits: model.card.limits.clone(),
            dimensions: files.dimensions,
        })
    }

    /// The engine in use.
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// The SHA-256 of the weights the engine loaded.
    pub fn weights_sha256(&self) -> Option<&str> {
        self.weights_sha256.as_deref()
    }
}

#[async_trait]
impl Model for EmbeddingModel {
    async fn infer(&self, input: &Value, run: Run) -> Result<Value, ModelError> {
        let texts = text_embedding::texts(input, &self.limits)
            .map_err(|e| ModelError::InvalidInput(e.to_string()))?;
        let texts = texts.into_iter().map(str::to_owned).collect();
        let embedded = self.batcher.embed(texts, run.lane, run.deadline).await.map_err(|e| match e {
            BatchError::Expired => ModelError::Expired,
            BatchError::Failed(reason) => ModelError::Failed(reason),
        })?;
        tracing::trace!(model = self.name, rows = embedded.rows.len(), "embedded");
        Ok(json!({"embeddings": embedded.rows, "dimensions": self.dimensions, "tokens": embedded.tokens}))
    }
}
