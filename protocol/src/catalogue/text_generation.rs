//! The `text-generation` kind's input rules: a conversation (`messages`) or a `prompt`,
//! and how to sample (`max_tokens`, `temperature`, `top_p`, `seed`, `stop`), bounded by the
//! card. Whether the prompt and `max_tokens` fit the context is counted in tokens, by whoever
//! holds the model's tokenizer (the api before it accepts the task).

use inferpush_repository::GenerationSection;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{InputError, invalid};
use crate::envelope::TOKENS_PER_SLOT;

/// The roles a message may have.
pub const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// Most stop strings (as OpenAI).
pub const MAX_STOPS: usize = 4;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// Its text.
    pub content: String,
}

/// What is to be continued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// A conversation, written out by the model's chat template.
    Messages(Vec<ChatMessage>),
    /// Raw text, continued as it is.
    Text(String),
}

/// A generation input, checked, with the card's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// What to continue.
    pub prompt: Prompt,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0: greedy.
    pub temperature: f64,
    /// Nucleus sampling's mass (1: off).
    pub top_p: f64,
    /// The random seed, when given (the same seed and input give the same text).
    pub seed: Option<u64>,
    /// It ends before the first of these.
    pub stop: Vec<String>,
}

const FIELDS: [&str; 7] = ["messages", "prompt", "max_tokens", "temperature", "top_p", "seed", "stop"];

/// Checks a generation input against the card's section, with its defaults filled in.
pub fn parse(input: &Value, section: &GenerationSection) -> Result<Generation, InputError> {
    let object = input
        .as_object()
        .ok_or_else(|| invalid("input", "must be a JSON object with `messages` or `prompt`"))?;
    if let Some(extra) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err(invalid(&format!("input.{extra}"), "is not a field of this model's input"));
    }
    let prompt = match (object.get("messages"), object.get("prompt")) {
        (Some(_), Some(_)) => return Err(invalid("input", "takes `messages` or `prompt`, not both")),
        (None, None) => return Err(invalid("input.messages", "is required (or `prompt`)")),
        (Some(messages), None) => Prompt::Messages(messages_of(messages)?),
        (None, Some(prompt)) => {
            let text = prompt.as_str().ok_or_else(|| invalid("input.prompt", "must be a string"))?;
            if text.is_empty() {
                return Err(invalid("input.prompt", "must not be empty"));
            }
            Prompt::Text(text.to_owned())
        }
    };
    let max_tokens = match object.get("max_tokens") {
        None | Some(Value::Null) => section.max_tokens,
        Some(value) => {
            let n = value.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                invalid("input.max_tokens", format!("must be an integer from 1 to {}", section.max_tokens))
            })?;
            if n as usize > section.max_tokens {
                return Err(invalid(
                    "input.max_tokens",
                    format!("is {n}; this model generates at most {} tokens per task", section.max_tokens),
                ));
            }
            n as usize
        }
    };
    let number = |field: &str, default: f64, ok: fn(f64) -> bool, rule: &str| match object.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => {
            value.as_f64().filter(|v| ok(*v)).ok_or_else(|| invalid(&format!("input.{field}"), rule))
        }
    };
    let temperature = number(
        "temperature",
        section.temperature,
        |t| (0.0..=2.0).contains(&t),
        "must be a number from 0 to 2",
    )?;
    let top_p =
        number("top_p", section.top_p, |p| p > 0. && p <= 1., "must be a number over 0 and at most 1")?;
    let seed = match object.get("seed") {
        None | Some(Value::Null) => None,
        Some(value) => {
            Some(value.as_u64().ok_or_else(|| invalid("input.seed", "must be a non-negative integer"))?)
        }
    };
    let stop = match object.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .map(|stop| {
                stop.as_str().map(str::to_owned).ok_or_else(|| invalid("input.stop", "must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("input.stop", "must be a string or an array of strings")),
    };
    if stop.len() > MAX_STOPS || stop.iter().any(String::is_empty) {
        return Err(invalid("input.stop", format!("must be 1 to {MAX_STOPS} non-empty strings")));
    }
    Ok(Generation { prompt, max_tokens, temperature, top_p, seed, stop })
}

fn messages_of(messages: &Value) -> Result<Vec<ChatMessage>, InputError> {
    let list =
        messages.as_array().ok_or_else(|| invalid("input.messages", "must be an array of messages"))?;
    if list.is_empty() {
        return Err(invalid("input.messages", "must hold at least one message"));
    }
    list.iter()
        .enumerate()
        .map(|(i, message)| {
            let field = |name: &str| format!("input.messages[{i}].{name}");
            let role = message
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(&field("role"), "is required: system, user or assistant"))?;
            if !ROLES.contains(&role) {
                return Err(invalid(
                    &field("role"),
                    format!("`{role}` is not a role: system, user or assistant"),
                ));
            }
            let content = message
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(&field("content"), "must be a string (text only)"))?;
            Ok(ChatMessage { role: role.to_owned(), content: content.to_owned() })
        })
        .collect()
}

/// Whether a prompt of `prompt_tokens` leaves room for `max_tokens` more in a context of
/// `context_length`: the error names all three sizes.
pub fn fits(prompt_tokens: usize, max_tokens: usize, context_length: usize) -> Result<(), InputError> {
    if prompt_tokens + max_tokens > context_length {
        return Err(invalid(
            "input.max_tokens",
            format!(
                "is {max_tokens}: with the prompt's {prompt_tokens} tokens that is {} tokens, over the model's \
                 context of {context_length}",
                prompt_tokens + max_tokens
            ),
        ));
    }
    Ok(())
}

/// In-flight slots of a generation: one per [`TOKENS_PER_SLOT`] tokens it may write.
pub fn slots(input: &Value, section: &GenerationSection) -> u64 {
    let max_tokens = input.get("max_tokens").and_then(Value::as_u64).unwrap_or(section.max_tokens as u64);
    max_tokens.div_ceil(TOKENS_PER_SLOT).max(1)
}

/// A result of this kind: the text (at most about 16 bytes of JSON per token) and its usage.
pub fn result_bytes(input: &Value, section: &GenerationSection) -> u64 {
    let max_tokens = input.get("max_tokens").and_then(Value::as_u64).unwrap_or(section.max_tokens as u64);
    max_tokens * 16 + 256 + super::RECORD_OVERHEAD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section() -> GenerationSection {
        GenerationSection {
            gguf: "m.gguf".into(),
            context_length: None,
            max_tokens: 512,
            max_concurrent_sequences: 8,
            temperature: 0.7,
            top_p: 1.,
        }
    }

    #[test]
    fn messages_or_a_prompt_with_the_cards_defaults() {
        let chat = parse(&json!({"messages": [{"role": "user", "content": "Hi"}]}), &section()).unwrap();
        assert_eq!(
            chat.prompt,
            Prompt::Messages(vec![ChatMessage { role: "user".into(), content: "Hi".into() }])
        );
        assert_eq!((chat.max_tokens, chat.temperature, chat.top_p, chat.seed), (512, 0.7, 1., None));
        let text = parse(
            &json!({"prompt": "Once", "max_tokens": 8, "temperature": 0, "top_p": 0.5, "seed": 7, "stop": "\n"}),
            &section(),
        )
        .unwrap();
        assert_eq!(text.prompt, Prompt::Text("Once".into()));
        assert_eq!((text.max_tokens, text.temperature, text.top_p, text.seed), (8, 0., 0.5, Some(7)));
        assert_eq!(text.stop, ["\n"]);
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let user = json!([{"role": "user", "content": "Hi"}]);
        let cases = [
            (json!({}), "`input.messages`"),
            (json!({"messages": user, "prompt": "x"}), "`input`"),
            (json!({"messages": []}), "`input.messages`"),
            (json!({"messages": [{"role": "tool", "content": "x"}]}), "`input.messages[0].role`"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "`input.messages[0].content`",
            ),
            (json!({"prompt": ""}), "`input.prompt`"),
            (json!({"messages": user, "max_tokens": 513}), "`input.max_tokens`"),
            (json!({"messages": user, "max_tokens": 0}), "`input.max_tokens`"),
            (json!({"messages": user, "temperature": 3}), "`input.temperature`"),
            (json!({"messages": user, "top_p": 0}), "`input.top_p`"),
            (json!({"messages": user, "seed": -1}), "`input.seed`"),
            (json!({"messages": user, "stop": ["a", "b", "c", "d", "e"]}), "`input.stop`"),
            (json!({"messages": user, "stop": [""]}), "`input.stop`"),
            (json!({"messages": user, "n": 2}), "`input.n`"),
        ];
        for (input, field) in cases {
            let err = parse(&input, &section()).unwrap_err().to_string();
            assert!(err.starts_with(field), "{input}: {err}");
        }
    }
}
