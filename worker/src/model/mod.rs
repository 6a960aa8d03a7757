//! Model backends behind one trait, and the registry of those a worker serves.

pub mod device;
mod echo;
pub mod embedding;
pub mod generation;
pub mod onnx_runtime;
pub mod tensor;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use inferpush_protocol::{Lane, Provenance};
use inferpush_repository::{Card, Kind, Model as RepositoryModel, Repository};
use serde_json::Value;

use device::{DeviceChoice, Precision};
pub use echo::Echo;
use embedding::{BatchSettings, EngineChoice};
pub use embedding::{EmbeddingModel, EmbeddingSettings};

/// Why a model produced no output.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// The input can never succeed: fail the task at once.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The model failed on valid input.
    #[error("model failed: {0}")]
    Failed(String),
    /// The task's deadline passed before the model ran it.
    #[error("the task's deadline passed before it ran")]
    Expired,
}

impl ModelError {
    /// The stable code put in `inference.failed` events.
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::InvalidInput(_) => "invalid_input",
            ModelError::Failed(_) => "model_error",
            ModelError::Expired => inferpush_protocol::lifecycle::ErrorCode::EXPIRED,
        }
    }
}

/// How one task is to be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The queue lane it came by (a model that queues work serves the main lane first).
    pub lane: Lane,
    /// Past this, a model that queues work drops the task unrun ([`ModelError::Expired`]).
    pub deadline: Option<Instant>,
    /// The task's own random seed (from its id), for a model that samples and was given
    /// none: every attempt of a task then writes the same text.
    pub seed: u64,
}

impl Run {
    /// A task of `lane` with no deadline.
    pub fn on(lane: Lane) -> Self {
        Self { lane, deadline: None, seed: 0 }
    }
}

/// A piece of output a streaming model has written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The new text.
    pub delta: String,
    /// Tokens generated so far.
    pub tokens: usize,
}

/// Where a streaming model sends its output as it writes it, and what stops it.
pub struct Stream {
    /// The pieces, in order.
    pub pieces: tokio::sync::mpsc::UnboundedSender<Piece>,
    /// Fires to stop it; it then ends with what it wrote so far.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// A model backend: turns one task's input into its output.
#[async_trait]
pub trait Model: Send + Sync + 'static {
    /// Runs the model on `input`.
    async fn infer(&self, input: &Value, run: Run) -> Result<Value, ModelError>;

    /// Whether it writes its output in pieces ([`Self::stream`]).
    fn streams(&self) -> bool {
        false
    }

    /// Runs the model on `input`, sending its output to `stream` as it is written; a
    /// model that does not stream just runs.
    async fn stream(&self, input: &Value, run: Run, stream: Stream) -> Result<Value, ModelError> {
        let _ = stream;
        self.infer(input, run).await
    }
}

/// Why a registry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The configuration names a model the repository has no card for.
    #[error("unknown model `{model}` in INFERPUSH_MODELS; the repository's models are: {known}")]
    Unknown {
        /// The name asked for.
        model: String,
        /// The repository's names, comma-separated.
        known: String,
    },
    /// No model configured at all.
    #[error("no model to serve: the repository holds none, or INFERPUSH_MODELS names none")]
    Empty,
    /// A model could not be loaded (files missing, engine failed).
    #[error("loading `{model}`: {reason}")]
    Load {
        /// The model.
        model: String,
        /// Why, including what to run.
        reason: String,
    },
}

/// What the worker's own settings say of every model it serves: where the repository
/// is, and what overrides the cards' preferences (`None`: the card's).
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The repository's folder.
    pub repository: PathBuf,
    /// Engine for embedding models (`auto`: the card's preference).
    pub engine: EngineChoice,
    /// Device, over the card's.
    pub device: Option<DeviceChoice>,
    /// candle's precision.
    pub precision: Precision,
    /// Threads for a forward pass.
    pub threads: usize,
    /// Rows per pass, over the card's `batching.max_batch_size`.
    pub max_batch_size: Option<usize>,
    /// Tokens per pass, over the card's `batching.max_batch_tokens`.
    pub max_batch_tokens: Option<usize>,
    /// Longest wait for more work once some is in hand.
    pub max_batch_delay: std::time::Duration,
    /// Unacked tasks per queue, over the card's `batching.prefetch`.
    pub prefetch: Option<u16>,
}

impl ServeSettings {
    /// How `card`'s embedding model is loaded and batched here.
    pub fn embedding(&self, card: &Card) -> anyhow::Result<EmbeddingSettings> {
        let device = match self.device {
            Some(device) => device,
            None => card.runtime.device.parse().map_err(|e| anyhow::anyhow!("runtime.device: {e}"))?,
        };
        let engine = match (self.engine, card.runtime.engine.as_str()) {
            (EngineChoice::Auto, "ort") => EngineChoice::Ort,
            (EngineChoice::Auto, "candle") => EngineChoice::Candle,
            (engine, _) => engine,
        };
        Ok(EmbeddingSettings {
            repository: self.repository.clone(),
            engine,
            threads: self.threads.max(1),
            device,
            precision: self.precision,
            batch: BatchSettings {
                max_batch_texts: self.max_batch_size.unwrap_or(card.batching.max_batch_size).max(1),
                // At least one text of the longest fits a pass.
                max_batch_tokens: self
                    .max_batch_tokens
                    .unwrap_or(card.batching.max_batch_tokens)
                    .max(card.limits.max_tokens),
                max_batch_delay: self.max_batch_delay,
            },
        })
    }

    /// Unacked tasks per queue of `card`'s model.
    pub fn prefetch(&self, card: &Card) -> u16 {
        self.prefetch.unwrap_or(card.batching.prefetch).max(1)
    }
}

/// A model served here: its engine, what it is, and how much of its queue it takes.
#[derive(Clone)]
struct Served {
    model: Arc<dyn Model>,
    provenance: Provenance,
    prefetch: u16,
}

/// The models one worker serves, by name.
#[derive(Clone, Default)]
pub struct Registry {
    models: HashMap<String, Served>,
}

impl Registry {
    /// Loads the models `names` asks for (all of the repository's when empty), each with
    /// the engine of its kind.
    pub fn build(
        repository: &Repository,
        names: &[String],
        settings: &ServeSettings,
    ) -> Result<Self, RegistryError> {
        let names = checked_files(repository, names)?;
        let mut registry = Registry::default();
        for name in names {
            let model = repository.get(&name).expect("served_names checks every name");
            let load_error =
                |e: anyhow::Error| RegistryError::Load { model: name.clone(), reason: format!("{e:#}") };
            let (engine, weights_sha256) = load(model, settings).map_err(load_error)?;
            let provenance = Provenance { version: model.card.version.clone(), weights_sha256 };
            let served = Served { model: engine, provenance, prefetch: settings.prefetch(&model.card) };
            registry.models.insert(name, served);
        }
        if registry.models.is_empty() {
            return Err(RegistryError::Empty);
        }
        Ok(registry)
    }

    /// The model called `name`, if served here.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Model>> {
        self.models.get(name).map(|served| served.model.clone())
    }

    /// What the model called `name` is: its card's version and the weights it loaded.
    pub fn provenance(&self, name: &str) -> Option<&Provenance> {
        self.models.get(name).map(|served| &served.provenance)
    }

    /// Unacked tasks per queue of the model called `name`.
    pub fn prefetch(&self, name: &str) -> u16 {
        self.models.get(name).map_or(1, |served| served.prefetch)
    }

    /// Names of the served models, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<_> = self.models.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

/// The models a worker serves: those `names` lists (each must have a card), or all of the
/// repository's.
pub fn served_names(repository: &Repository, names: &[String]) -> Result<Vec<String>, RegistryError> {
    let names: Vec<String> =
        names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    if names.is_empty() {
        return Ok(repository.names().into_iter().map(str::to_owned).collect());
    }
    for name in &names {
        if repository.get(name).is_none() {
            let known = repository.names().join(", ");
            return Err(RegistryError::Unknown { model: name.clone(), known });
        }
    }
    Ok(names)
}

/// The models a worker serves ([`served_names`]), their files present and of the SHA-256
/// their cards give (what `--check-config` checks too, and what a worker checks once
/// before loading them).
pub fn checked_files(repository: &Repository, names: &[String]) -> Result<Vec<String>, RegistryError> {
    let names = served_names(repository, names)?;
    let served: Vec<&str> = names.iter().map(String::as_str).collect();
    repository
        .only(&served)
        .check_files(inferpush_repository::FileCheck::Checksums)
        .map_err(|e| RegistryError::Load { model: e.file.display().to_string(), reason: e.to_string() })?;
    Ok(names)
}

/// The engine of each kind: the one place a kind's module is wired in (the `match` does
/// not compile until every [`Kind`] has an arm). Also the SHA-256 of the weights loaded.
fn load(
    model: &RepositoryModel,
    settings: &ServeSettings,
) -> anyhow::Result<(Arc<dyn Model>, Option<String>)> {
    Ok(match model.card.kind {
        Kind::Echo => (Arc::new(Echo), None),
        Kind::TextEmbedding => {
            let embedding = EmbeddingModel::load(model, &settings.embedding(&model.card)?)?;
            let weights = embedding.weights_sha256().map(str::to_owned);
            (Arc::new(embedding), weights)
        }
        Kind::Tensor => {
            let tensor = tensor::TensorModel::load(model, settings)?;
            let weights = Some(tensor.weights_sha256().to_owned());
            (Arc::new(tensor), weights)
        }
        Kind::TextGeneration => {
            let generation = generation::GenerationModel::load(model, settings)?;
            let weights = Some(generation.weights_sha256().to_owned());
            (Arc::new(generation), weights)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(repository: &std::path::Path) -> ServeSettings {
        ServeSettings {
            repository: repository.to_owned(),
            engine: EngineChoice::Auto,
            device: None,
            precision: Precision::F32,
            threads: 1,
            max_batch_size: None,
            max_batch_tokens: None,
            max_batch_delay: std::time::Duration::ZERO,
            prefetch: None,
        }
    }

    fn shipped() -> (PathBuf, Repository) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models");
        let repository = Repository::load(&dir, inferpush_repository::FileCheck::None).unwrap();
        (dir, repository)
    }

    #[test]
    fn registry_serves_exactly_the_configured_models() {
        let (dir, repository) = shipped();
        let registry = Registry::build(&repository, &["echo".into()], &settings(&dir)).unwrap();
        assert_eq!(registry.names(), ["echo"]);
        assert!(registry.get("echo").is_some());
        assert!(registry.get("other").is_none());
        assert_eq!(
            registry.provenance("echo").map(|p| (p.version.as_str(), p.weights_sha256.is_none())),
            Some(("1", true))
        );
    }

    #[test]
    fn unknown_or_no_models_are_start_up_errors_listing_the_repositorys() {
        let (dir, repository) = shipped();
        let err =
            Registry::build(&repository, &["echo".into(), "gpt-9".into()], &settings(&dir)).err().unwrap();
        assert!(err.to_string().contains("gpt-9") && err.to_string().contains("all-minilm-l6-v2"), "{err}");
        let empty = Repository::default();
        assert!(matches!(Registry::build(&empty, &[], &settings(&dir)), Err(RegistryError::Empty)));
        assert_eq!(served_names(&repository, &[]).unwrap(), repository.names());
    }

    #[test]
    fn missing_model_files_say_what_to_run() {
        let (_, repository) = shipped();
        let scratch = tempfile::tempdir().unwrap();
        let moved = Repository::load(scratch.path(), inferpush_repository::FileCheck::None).unwrap();
        assert!(moved.models().is_empty());
        let mut model = repository.get("all-minilm-l6-v2").unwrap().clone();
        model.dir = scratch.path().join("all-minilm-l6-v2");
        let err = load(&model, &settings(scratch.path())).err().unwrap();
        assert!(format!("{err:#}").contains("scripts/fetch-model.sh"), "{err:#}");
    }

    #[test]
    fn the_workers_settings_override_the_cards_batching_and_engine() {
        let (dir, repository) = shipped();
        let card = &repository.get("all-minilm-l6-v2").unwrap().card;
        let from_card = settings(&dir).embedding(card).unwrap();
        assert_eq!(from_card.batch.max_batch_texts, card.batching.max_batch_size);
        assert_eq!(from_card.device, DeviceChoice::Cpu);
        let over = ServeSettings {
            max_batch_size: Some(3),
            max_batch_tokens: Some(1),
            prefetch: Some(5),
            ..settings(&dir)
        };
        let embedding = over.embedding(card).unwrap();
        assert_eq!(embedding.batch.max_batch_texts, 3);
        assert_eq!(embedding.batch.max_batch_tokens, card.limits.max_tokens, "one longest text always fits");
        assert_eq!((over.prefetch(card), settings(&dir).prefetch(card)), (5, card.batching.prefetch));
    }
}
