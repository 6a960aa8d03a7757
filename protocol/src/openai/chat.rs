//! OpenAI's chat completions (`POST /v1/chat/completions`) as its SDKs speak them: the
//! request, turned into a `text-generation` task's input; the answer (`chat.completion`)
//! and the streamed chunks (`chat.completion.chunk`) made from the task's output and deltas.
//! What inferpush does not do (`n` other than 1, tools, images, audio) is a 400 naming the
//! field.

use serde::Deserialize;
use serde_json::{Value, json};

use super::RequestError;
use crate::TaskId;
use crate::catalogue::{Catalogue, Entry, InputError, text_generation};

/// The route.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";

/// `POST /v1/chat/completions`: what a client sends. Fields OpenAI defines that change
/// nothing here (`user`, `metadata`, `store`, `logit_bias`…) are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
pub struct ChatRequest {
    /// A text-generation model of the catalogue, by name or alias.
    #[schema(examples("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"))]
    pub model: String,
    /// The conversation: `system` (or `developer`), `user` and `assistant` messages of text.
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<Value>,
    /// Most tokens to generate (older name).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// 0–2.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling's mass.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// The same seed and input give the same text.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Up to 4 strings that end the answer.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub stop: Option<Value>,
    /// Answer as server-sent events of chunks as the text is written.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `{"include_usage": true}`: a last chunk with the usage.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub stream_options: Option<Value>,
    /// Choices to generate: only 1.
    #[serde(default)]
    pub n: Option<u64>,
    /// Tools are not supported.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub tools: Option<Value>,
    /// Functions are not supported.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub functions: Option<Value>,
    /// Only text answers are made.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub response_format: Option<Value>,
    /// Audio is not supported.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub audio: Option<Value>,
    /// Log probabilities are not returned.
    #[serde(default)]
    pub logprobs: Option<bool>,
    /// The caller's end user; logged.
    #[serde(default)]
    pub user: Option<String>,
}

/// A request checked and turned into a task of a generation model.
#[derive(Debug, Clone)]
pub struct ChatTask {
    /// The catalogue's model.
    pub model: Entry,
    /// The model's input.
    pub input: Value,
    /// Whether the answer streams.
    pub stream: bool,
    /// Whether a streamed answer ends with a chunk of usage.
    pub include_usage: bool,
}

impl ChatRequest {
    /// Checks the request and makes the task's input, or says what is wrong as OpenAI does.
    pub fn task(&self, catalogue: &Catalogue) -> Result<ChatTask, RequestError> {
        let model = catalogue.find_generation(&self.model).ok_or_else(|| RequestError {
            status: 404,
            message: format!(
                "The model `{}` does not exist or is not a chat model; chat models here: {}",
                self.model,
                catalogue.generation_names()
            ),
            param: Some("model"),
            code: Some("model_not_found"),
        })?;
        if self.n.is_some_and(|n| n != 1) {
            return Err(RequestError::invalid("n", "only `n` = 1 is supported: one choice per request"));
        }
        for (param, present) in [
            ("tools", self.tools.is_some()),
            ("functions", self.functions.is_some()),
            ("audio", self.audio.is_some()),
            ("logprobs", self.logprobs == Some(true)),
        ] {
            if present {
                return Err(RequestError::invalid(
                    param,
                    format!("`{param}` is not supported by this server"),
                ));
            }
        }
        if let Some(format) = &self.response_format
            && format.get("type").and_then(Value::as_str) != Some("text")
        {
            return Err(RequestError::invalid("response_format", "only `{\"type\": \"text\"}` is supported"));
        }
        let messages = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, message)| message_of(i, message))
            .collect::<Result<Vec<_>, _>>()?;
        let mut input = json!({ "messages": messages });
        let max_tokens = self.max_completion_tokens.or(self.max_tokens);
        let fields = [
            ("max_tokens", max_tokens.map(Value::from)),
            ("temperature", self.temperature.map(Value::from)),
            ("top_p", self.top_p.map(Value::from)),
            ("seed", self.seed.map(|seed| Value::from(seed as u64))),
            ("stop", self.stop.clone().filter(|stop| !stop.is_null())),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                input[name] = value;
            }
        }
        if self.seed.is_some_and(|seed| seed < 0) {
            return Err(RequestError::invalid("seed", "`seed` must be a non-negative integer"));
        }
        model.validate(&input).map_err(|e| request_error(&e))?;
        let include_usage = self
            .stream_options
            .as_ref()
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(ChatTask { model: model.clone(), input, stream: self.stream.unwrap_or(false), include_usage })
    }
}

/// An input refused by the model's rules, as OpenAI names the field.
pub fn request_error(error: &InputError) -> RequestError {
    let param = match error {
        InputError::TooLarge { .. } => {
            return RequestError {
                status: 413,
                message: error.to_string(),
                param: Some("messages"),
                code: None,
            };
        }
        InputError::Invalid { field, .. } if field.starts_with("input.max_tokens") => "max_tokens",
        InputError::Invalid { field, .. } if field.starts_with("input.temperature") => "temperature",
        InputError::Invalid { field, .. } if field.starts_with("input.top_p") => "top_p",
        InputError::Invalid { field, .. } if field.starts_with("input.stop") => "stop",
        InputError::Invalid { field, .. } if field.starts_with("input.seed") => "seed",
        _ => "messages",
    };
    RequestError::invalid(param, error.to_string())
}

/// One message as the model's input takes it: its role (`developer` is `system`) and its
/// text (parts of text joined; anything else refused).
fn message_of(i: usize, message: &Value) -> Result<text_generation::ChatMessage, RequestError> {
    let role = message.get("role").and_then(Value::as_str).unwrap_or_default();
    let role = match role {
        "developer" => "system",
        "system" | "user" | "assistant" => role,
        other => {
            return Err(RequestError::invalid(
                "messages",
                format!(
                    "`messages[{i}].role` `{other}` is not supported: system, developer, user or assistant"
                ),
            ));
        }
    };
    let content = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| {
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(text)) => Ok(text),
                    (kind, _) => Err(RequestError::invalid(
                        "messages",
                        format!(
                            "`messages[{i}].content` part of type `{}` is not supported: text only",
                            kind.unwrap_or("?")
                        ),
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(""),
        Some(Value::Null) | None if role == "assistant" => String::new(),
        _ => return Err(RequestError::invalid("messages", format!("`messages[{i}].content` must be text"))),
    };
    Ok(text_generation::ChatMessage { role: role.to_owned(), content })
}

/// The id OpenAI's answers carry for task `task_id`.
pub fn completion_id(task_id: TaskId) -> String {
    format!("chatcmpl-{task_id}")
}

/// OpenAI's `finish_reason` for the task's (`cancelled` stays itself: OpenAI has none).
fn finish_reason(output: &Value) -> Value {
    output.get("finish_reason").cloned().unwrap_or(Value::Null)
}

/// The usage of a generation's output, in OpenAI's shape.
pub fn usage(output: &Value) -> Value {
    output
        .get("usage")
        .cloned()
        .unwrap_or_else(|| json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}))
}

/// `chat.completion` for a finished generation's `output`.
pub fn completion(task_id: TaskId, model: &str, created_s: u64, output: &Value) -> Value {
    json!({
        "id": completion_id(task_id),
        "object": "chat.completion",
        "created": created_s,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": output.get("text").and_then(Value::as_str).unwrap_or_default(), "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason(output),
        }],
        "usage": usage(output),
        "system_fingerprint": null,
    })
}

/// The pieces of a streamed answer, each a `chat.completion.chunk`.
pub struct Chunks {
    id: String,
    model: String,
    created_s: u64,
}

impl Chunks {
    /// The chunks of task `task_id`'s answer.
    pub fn new(task_id: TaskId, model: &str, created_s: u64) -> Self {
        Self { id: completion_id(task_id), model: model.to_owned(), created_s }
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created_s,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        chunk
    }

    /// The first chunk: the assistant's role.
    pub fn role(&self) -> Value {
        self.chunk(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]), None)
    }

    /// More text.
    pub fn text(&self, delta: &str) -> Value {
        self.chunk(
            json!([{"index": 0, "delta": {"content": delta}, "logprobs": null, "finish_reason": null}]),
            None,
        )
    }

    /// The end, with why.
    pub fn finish(&self, output: &Value) -> Value {
        self.chunk(
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason(output)}]),
            None,
        )
    }

    /// The usage, after the end (`stream_options.include_usage`).
    pub fn usage(&self, output: &Value) -> Value {
        self.chunk(json!([]), Some(usage(output)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::catalogue::shipped;

    fn request(body: Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_conversation_becomes_the_models_input() {
        let body = json!({"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}],
            "max_completion_tokens": 16, "temperature": 0, "seed": 3, "stop": ["\n"], "stream": true,
            "stream_options": {"include_usage": true}, "n": 1, "user": "u-1"});
        let task = request(body).task(&shipped()).unwrap();
        assert_eq!(task.model.name, "smollm2-135m-instruct");
        assert!(task.stream && task.include_usage);
        assert_eq!(
            task.input,
            json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
                   "max_tokens": 16, "temperature": 0.0, "seed": 3, "stop": ["\n"]})
        );
    }

    #[test]
    fn what_is_not_supported_is_a_400_naming_the_field() {
        let user = json!([{"role": "user", "content": "Hi"}]);
        let image = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]);
        let cases = [
            (json!({"model": "gpt-4o", "messages": user}), 404, "model"),
            (json!({"model": "echo", "messages": user}), 404, "model"),
            (json!({"model": "smollm2-135m-instruct", "messages": user, "n": 2}), 400, "n"),
            (
                json!({"model": "smollm2-135m-instruct", "messages": user, "tools": [{"type": "function"}]}),
                400,
                "tools",
            ),
            (json!({"model": "smollm2-135m-instruct", "messages": image}), 400, "messages"),
            (
                json!({"model": "smollm2-135m-instruct", "messages": [{"role": "tool", "content": "x"}]}),
                400,
                "messages",
            ),
            (
                json!({"model": "smollm2-135m-instruct", "messages": user, "max_tokens": 100000}),
                400,
                "max_tokens",
            ),
            (
                json!({"model": "smollm2-135m-instruct", "messages": user, "temperature": 5}),
                400,
                "temperature",
            ),
            (json!({"model": "smollm2-135m-instruct", "messages": []}), 400, "messages"),
        ];
        for (body, status, param) in cases {
            let error = request(body.clone()).task(&shipped()).unwrap_err();
            assert_eq!((error.status, error.param), (status, Some(param)), "{body}: {}", error.message);
        }
    }

    #[test]
    fn answers_and_chunks_have_openais_shape() {
        let task_id = TaskId::new_v7();
        let output = json!({"text": "Hello!", "finish_reason": "stop",
                            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
        let answer = completion(task_id, "smollm2-135m-instruct", 10, &output);
        assert_eq!(answer["object"], "chat.completion");
        assert_eq!(answer["choices"][0]["message"]["content"], "Hello!");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        assert_eq!(answer["usage"]["total_tokens"], 7);
        let chunks = Chunks::new(task_id, "smollm2-135m-instruct", 10);
        assert_eq!(chunks.role()["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks.text("Hel")["choices"][0]["delta"]["content"], "Hel");
        assert_eq!(chunks.finish(&output)["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks.usage(&output)["choices"], json!([]));
        assert_eq!(chunks.usage(&output)["usage"]["completion_tokens"], 2);
    }
}
