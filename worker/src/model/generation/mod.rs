//! Text generation from GGUF models, as llama.cpp runs them: the model's own tokenizer and
//! chat template (`inferpush-gguf`), the llama network over its quantized weights
//! ([`llama`]), and one engine thread decoding every sequence in flight together
//! ([`engine`]). Text streams out as it is written ([`text`]); the task's result is the
//! whole text with its usage and timings.

pub mod engine;
pub mod llama;
mod nucleus;
pub mod text;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use candle_core::quantized::gguf_file::Content;
use inferpush_gguf::ModelText;
use inferpush_protocol::catalogue::text_generation;
use inferpush_repository::{GenerationSection, Model as RepositoryModel};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Model, ModelError, Piece, Run, ServeSettings, Stream};
use engine::{Engine, Job, Sampling, Update};

/// A `text-generation` model, loaded and decoding on its own thread.
pub struct GenerationModel {
    section: GenerationSection,
    text: Arc<ModelText>,
    context_length: usize,
    engine: Engine,
    weights_sha256: String,
}

impl GenerationModel {
    /// Loads `model`'s GGUF file on the device the settings or the card name.
    pub fn load(model: &RepositoryModel, settings: &ServeSettings) -> anyhow::Result<Self> {
        let card = &model.card;
        let section = card
            .text_generation
            .clone()
            .ok_or_else(|| anyhow::anyhow!("`{}` is not a text-generation model", card.name))?;
        let path = model.file(&section.gguf);
        let mut file = std::fs::File::open(&path)
            .map_err(|e| anyhow::anyhow!("opening {}: {e} (run `scripts/fetch-model.sh`)", path.display()))?;
        let content =
            Content::read(&mut file).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let text = ModelText::of(&content)?;
        let device = match settings.device {
            Some(device) => device,
            None => card.runtime.device.parse().map_err(|e| anyhow::anyhow!("runtime.device: {e}"))?,
        };
        let network = llama::Llama::load(&content, &mut file, &device.open()?)?;
        let context_length = section.context_length.unwrap_or(text.context_length).min(text.context_length);
        let text = Arc::new(text);
        let tokenizer = Arc::new(text.tokenizer.clone());
        let engine = Engine::start(network, tokenizer, section.max_concurrent_sequences);
        tracing::info!(
            model = card.name,
            context_length,
            max_sequences = section.max_concurrent_sequences,
            "generation model loaded"
        );
        Ok(Self {
            weights_sha256: card.sha256_of(&section.gguf).unwrap_or_default().to_owned(),
            section,
            text,
            context_length,
            engine,
        })
    }

    /// The SHA-256 of the GGUF file, as the card lists it.
    pub fn weights_sha256(&self) -> &str {
        &self.weights_sha256
    }
}

#[async_trait]
impl Model for GenerationModel {
    async fn infer(&self, input: &Value, run: Run) -> Result<Value, ModelError> {
        let (updates, _ignored) = mpsc::unbounded_channel();
        self.stream(input, run, Stream { pieces: updates, cancel: CancellationToken::new() }).await
    }

    async fn stream(&self, input: &Value, run: Run, stream: Stream) -> Result<Value, ModelError> {
        let generation = text_generation::parse(input, &self.section)
            .map_err(|e| ModelError::InvalidInput(e.to_string()))?;
        let prompt = self
            .text
            .prompt_tokens(&generation, self.context_length)
            .map_err(|e| ModelError::InvalidInput(e.to_string()))?;
        if run.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(ModelError::Expired);
        }
        let sampling = Sampling {
            max_tokens: generation.max_tokens,
            temperature: generation.temperature,
            top_p: (generation.top_p < 1.).then_some(generation.top_p),
            seed: generation.seed.unwrap_or(run.seed),
            stop: generation.stop,
        };
        let (updates, mut received) = mpsc::unbounded_channel();
        let job = Job { prompt, sampling, updates, cancel: stream.cancel.clone() };
        self.engine
            .submit(job)
            .map_err(|_| ModelError::Failed("the generation engine is full or gone".into()))?;
        let mut text = String::new();
        while let Some(update) = received.recv().await {
            match update {
                Update::Text { delta, tokens } => {
                    if !delta.is_empty() {
                        text.push_str(&delta);
                        let _ = stream.pieces.send(Piece { delta, tokens });
                    }
                }
                Update::Done(finished) => {
                    let usage = json!({
                        "prompt_tokens": finished.prompt_tokens,
                        "completion_tokens": finished.completion_tokens,
                        "total_tokens": finished.prompt_tokens + finished.completion_tokens,
                    });
                    let timings = json!({
                        "time_to_first_token_ms": finished.time_to_first_token.as_secs_f64() * 1000.,
                        "tokens_per_second": finished.tokens_per_second,
                    });
                    return Ok(json!({
                        "text": text,
                        "finish_reason": finished.finish.as_str(),
                        "usage": usage,
                        "timings": timings,
                    }));
                }
                Update::Failed(reason) => return Err(ModelError::Failed(reason)),
            }
        }
        Err(ModelError::Failed("the generation engine stopped".into()))
    }

    fn streams(&self) -> bool {
        true
    }
}
