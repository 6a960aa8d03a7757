//! The generation models' prompts, counted in tokens before a task is accepted: the api
//! reads each GGUF file's metadata (its tokenizer and chat template, never its weights) so
//! that a prompt plus `max_tokens` over the context is a 422 at once, not a failed task
//! later. Where the api has no copy of a model's file (an image that carries only cards),
//! the worker makes the same check and fails the task with the same message.

use std::collections::HashMap;

use inferpush_gguf::ModelText;
use inferpush_protocol::catalogue::text_generation;
use inferpush_protocol::catalogue::{Entry, InputError};
use inferpush_repository::{Kind, Repository};
use serde_json::Value;

/// What the api knows of each generation model's text side.
#[derive(Default)]
pub struct Prompts {
    models: HashMap<String, (ModelText, usize)>,
}

impl Prompts {
    /// Reads the metadata of every generation model of `repository` whose file is here.
    pub fn load(repository: &Repository) -> anyhow::Result<Self> {
        let mut models = HashMap::new();
        for model in repository.models().iter().filter(|m| m.card.kind == Kind::TextGeneration) {
            let section = model.card.text_generation.as_ref().expect("checked by the card");
            let path = model.file(&section.gguf);
            if !path.exists() {
                tracing::warn!(model = model.card.name, file = %path.display(), "no copy of the model's file here: prompts are counted by the worker");
                continue;
            }
            let text = ModelText::read(&path)?;
            let context = section.context_length.unwrap_or(text.context_length).min(text.context_length);
            models.insert(model.card.name.clone(), (text, context));
        }
        Ok(Self { models })
    }

    /// Checks that a valid generation input's prompt leaves room for its `max_tokens`.
    pub fn check(&self, entry: &Entry, input: &Value) -> Result<(), InputError> {
        let (Some((text, context)), Some(section)) = (self.models.get(&entry.name), &entry.generation) else {
            return Ok(());
        };
        let generation = text_generation::parse(input, section)?;
        text.prompt_tokens(&generation, *context).map(|_| ())
    }
}
