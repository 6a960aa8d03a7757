//! The chat template a GGUF file carries (`tokenizer.chat_template`, Jinja as Hugging Face
//! writes it), rendered with minijinja: a conversation becomes the model's prompt.

use candle_core::quantized::gguf_file::Content;
use serde::{Deserialize, Serialize};

use crate::tokenizer::GgufTokenizer;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

/// A model's chat template.
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// The template of `content`, if it has one; checked by rendering a short conversation.
    pub fn from_gguf(content: &Content, tokenizer: &GgufTokenizer) -> anyhow::Result<Option<Self>> {
        let Some(source) = content.metadata.get("tokenizer.chat_template") else {
            return Ok(None);
        };
        let source = source.to_string()?.clone();
        let token = |key: &str| -> anyhow::Result<String> {
            match content.metadata.get(key) {
                Some(id) => tokenizer.decode(&[id.to_u32()?]),
                None => Ok(String::new()),
            }
        };
        let template = Self {
            source,
            bos_token: token("tokenizer.ggml.bos_token_id")?,
            eos_token: token("tokenizer.ggml.eos_token_id")?,
        };
        template
            .render(&[Message { role: "user".into(), content: "hello".into() }])
            .map_err(|e| anyhow::anyhow!("the GGUF file's chat template does not render: {e:#}"))?;
        Ok(Some(template))
    }

    /// The prompt for `messages`, ending where the assistant's answer begins.
    pub fn render<M: Serialize>(&self, messages: &[M]) -> anyhow::Result<String> {
        let mut environment = minijinja::Environment::new();
        environment.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
        });
        let context = minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        environment
            .render_str(&self.source, context)
            .map_err(|e| anyhow::anyhow!("rendering the chat template: {e}"))
    }
}
