//! What a GGUF model file says of itself, read from its metadata alone (no weights): the
//! tokenizer ([`tokenizer`]) and the chat template ([`chat`]). The api counts a prompt's
//! tokens with them before it accepts a task; the worker runs the same prompt.

pub mod chat;
pub mod tokenizer;

use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use inferpush_protocol::catalogue::InputError;
use inferpush_protocol::catalogue::text_generation::{self, Generation, Prompt};

pub use chat::{ChatTemplate, Message};
pub use tokenizer::GgufTokenizer;

/// A GGUF model's text side: how its prompts are written and tokenized.
pub struct ModelText {
    /// Its tokenizer.
    pub tokenizer: GgufTokenizer,
    /// Its chat template, when the file has one.
    pub template: Option<ChatTemplate>,
    /// The longest sequence it was trained for (`{architecture}.context_length`).
    pub context_length: usize,
}

impl ModelText {
    /// The text side of the model `content` describes.
    pub fn of(content: &Content) -> anyhow::Result<Self> {
        let tokenizer = tokenizer::from_gguf(content)?;
        let template = ChatTemplate::from_gguf(content, &tokenizer)?;
        let architecture = content
            .metadata
            .get("general.architecture")
            .and_then(|value| value.to_string().ok())
            .cloned()
            .unwrap_or_else(|| "llama".to_owned());
        let key = format!("{architecture}.context_length");
        let context_length = content
            .metadata
            .get(&key)
            .ok_or_else(|| anyhow::anyhow!("the GGUF file has no `{key}`"))?
            .to_u32()? as usize;
        Ok(Self { tokenizer, template, context_length })
    }

    /// Reads the metadata of the file at `path` (not its weights).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let mut file =
            std::fs::File::open(path).map_err(|e| anyhow::anyhow!("opening {}: {e}", path.display()))?;
        let content =
            Content::read(&mut file).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::of(&content)
    }

    /// The prompt for a conversation, through the chat template (ready for the
    /// assistant's answer).
    pub fn chat_prompt<M: serde::Serialize>(&self, messages: &[M]) -> anyhow::Result<String> {
        match &self.template {
            Some(template) => template.render(messages),
            None => anyhow::bail!("the model has no chat template: send a `prompt`"),
        }
    }

    /// The tokens of `generation`'s prompt, checked to leave room for its `max_tokens`
    /// within `context_length`: what the api checks before it accepts a task, and what the
    /// worker runs.
    pub fn prompt_tokens(
        &self,
        generation: &Generation,
        context_length: usize,
    ) -> Result<Vec<u32>, InputError> {
        let refused = |field: &str, problem: String| InputError::Invalid { field: field.to_owned(), problem };
        let prompt = match &generation.prompt {
            Prompt::Text(text) => text.clone(),
            Prompt::Messages(messages) => {
                self.chat_prompt(messages).map_err(|e| refused("input.messages", format!("{e:#}")))?
            }
        };
        let tokens = self.tokenizer.encode(&prompt).map_err(|e| refused("input", format!("{e:#}")))?;
        text_generation::fits(tokens.len(), generation.max_tokens, context_length)?;
        Ok(tokens)
    }
}
