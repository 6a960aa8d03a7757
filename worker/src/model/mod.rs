//! Model backends behind one trait, and the registry of those a worker serves.

pub mod device;
mod echo;
pub mod embedding;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use inferpush_protocol::Lane;
use inferpush_protocol::catalogue::{self, ModelId};
use serde_json::Value;

pub use echo::Echo;
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
}

impl Run {
    /// A task of `lane` with no deadline.
    pub fn on(lane: Lane) -> Self {
        Self { lane, deadline: None }
    }
}

/// A model backend: turns one task's input into its output.
#[async_trait]
pub trait Model: Send + Sync + 'static {
    /// Runs the model on `input`.
    async fn infer(&self, input: &Value, run: Run) -> Result<Value, ModelError>;
}

/// Why a registry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The configuration names a model this worker cannot run.
    #[error("unknown model `{0}` in --models; this worker can serve: {known}", known = catalogue::known_names())]
    Unknown(String),
    /// No model configured at all.
    #[error("--models is empty: name at least one model")]
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

/// The models one worker serves, by name.
#[derive(Clone, Default)]
pub struct Registry {
    models: HashMap<&'static str, Arc<dyn Model>>,
}

impl Registry {
    /// Builds the models `names` asks for; `embedding` says how to load the embedding model.
    pub fn build(names: &[String], embedding: &EmbeddingSettings) -> Result<Self, RegistryError> {
        let mut registry = Registry::default();
        for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let spec = catalogue::find(name).ok_or_else(|| RegistryError::Unknown(name.to_owned()))?;
            let model = load(spec.id, embedding)
                .map_err(|e| RegistryError::Load { model: name.to_owned(), reason: format!("{e:#}") })?;
            registry.models.insert(spec.name, model);
        }
        if registry.models.is_empty() {
            return Err(RegistryError::Empty);
        }
        Ok(registry)
    }

    /// The model called `name`, if served here.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Model>> {
        self.models.get(name).cloned()
    }

    /// Names of the served models, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.models.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

/// The engine of each catalogue model: the one place a new model's module is wired in
/// (the `match` does not compile until every [`ModelId`] has an arm).
fn load(id: ModelId, embedding: &EmbeddingSettings) -> anyhow::Result<Arc<dyn Model>> {
    Ok(match id {
        ModelId::Echo => Arc::new(Echo),
        ModelId::MiniLm => Arc::new(EmbeddingModel::load(embedding)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(model_dir: &str) -> EmbeddingSettings {
        EmbeddingSettings {
            model_dir: model_dir.into(),
            engine: embedding::EngineChoice::Auto,
            threads: 1,
            device: device::DeviceChoice::Cpu,
            precision: device::Precision::F32,
            batch: embedding::BatchSettings {
                max_batch_texts: 8,
                max_batch_tokens: 1024,
                max_batch_delay: std::time::Duration::ZERO,
            },
        }
    }

    #[test]
    fn registry_serves_exactly_the_configured_models() {
        let registry = Registry::build(&["echo".into()], &settings("models")).unwrap();
        assert_eq!(registry.names(), ["echo"]);
        assert!(registry.get("echo").is_some());
        assert!(registry.get("other").is_none());
    }

    #[test]
    fn unknown_or_no_models_are_start_up_errors() {
        let err = Registry::build(&["echo".into(), "gpt-9".into()], &settings("models")).err().unwrap();
        assert!(err.to_string().contains("gpt-9"), "{err}");
        assert!(matches!(Registry::build(&[], &settings("models")), Err(RegistryError::Empty)));
    }

    #[test]
    fn missing_model_files_say_what_to_run() {
        let err = Registry::build(&["all-minilm-l6-v2".into()], &settings("/nonexistent")).err().unwrap();
        assert!(err.to_string().contains("scripts/fetch-model.sh"), "{err}");
    }
}
