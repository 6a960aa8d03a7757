//! OpenAI's embeddings API (`POST /v1/embeddings`), as its SDKs and
//! text-embeddings-inference speak it: the request, the answer, the error body, and the
//! pure conversions between them and an inferpush task (its model's input and output).
//! Chat completions are in [`chat`].

pub mod chat;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalogue::{self, Catalogue, Entry};

/// The route.
pub const EMBEDDINGS_PATH: &str = "/v1/embeddings";

/// How the vectors are written in the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// Arrays of numbers.
    #[default]
    Float,
    /// Each vector's little-endian f32 bytes, base64 (what OpenAI's SDKs ask for and decode).
    Base64,
}

/// `POST /v1/embeddings`: what a client sends. Fields OpenAI defines and inferpush has no
/// use for are accepted and ignored, as OpenAI-compatible servers do.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingsRequest {
    /// An embedding model of the catalogue, by name or alias (`GET /v1/models`).
    #[schema(examples("all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2"))]
    pub model: String,
    /// A string, or an array of strings (token-id arrays are refused).
    #[schema(value_type = EmbeddingsInput, examples(json!("A man is eating food."), json!(["first", "second"])))]
    pub input: Value,
    /// `float` (default) or `base64`.
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// The vectors' size, when given: must be the model's.
    #[serde(default)]
    pub dimensions: Option<u64>,
    /// The caller's end user, as OpenAI has it; logged with the task.
    #[serde(default)]
    pub user: Option<String>,
}

/// The shapes OpenAI's `input` may take (for the document: the request keeps it as JSON
/// to say exactly what is wrong with it).
#[derive(utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum EmbeddingsInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// Token ids (refused with a 422).
    Tokens(Vec<u32>),
    /// Several texts as token ids (refused with a 422).
    TokenLists(Vec<Vec<u32>>),
}

/// Why a request cannot be run, with the field OpenAI names (`param`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// 400, 404 or 422.
    pub status: u16,
    /// What is wrong.
    pub message: String,
    /// The offending field.
    pub param: Option<&'static str>,
    /// OpenAI's code for it, if it has one.
    pub code: Option<&'static str>,
}

impl RequestError {
    pub(crate) fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self { status: 400, message: message.into(), param: Some(param), code: None }
    }
}

/// A request checked and turned into an inferpush task's model and input.
#[derive(Debug, Clone)]
pub struct EmbeddingsTask {
    /// The catalogue's model.
    pub model: Entry,
    /// How many texts.
    pub texts: usize,
    /// The model's input.
    pub input: Value,
    /// How to write the answer.
    pub encoding: EncodingFormat,
}

impl EmbeddingsRequest {
    /// Checks the request and makes the task's input, or says what is wrong as OpenAI does.
    pub fn task(&self, catalogue: &Catalogue) -> Result<EmbeddingsTask, RequestError> {
        let model = catalogue.find_embedding(&self.model).ok_or_else(|| RequestError {
            status: 404,
            message: format!(
                "The model `{}` does not exist or is not an embedding model; embedding models here: {}",
                self.model,
                catalogue.embedding_names()
            ),
            param: Some("model"),
            code: Some("model_not_found"),
        })?;
        let size = model.dimensions.unwrap_or(0);
        let texts = texts_of(&self.input)?;
        if let Some(dimensions) = self.dimensions
            && dimensions != size as u64
        {
            return Err(RequestError::invalid(
                "dimensions",
                format!("model `{}` makes vectors of {size} dimensions only", model.name),
            ));
        }
        let count = texts.len();
        let input = catalogue::text_embedding::input_of(texts);
        model.validate(&input).map_err(|e| match e {
            catalogue::InputError::TooLarge { .. } => {
                RequestError { status: 413, message: e.to_string(), param: Some("input"), code: None }
            }
            other => RequestError::invalid("input", other.to_string()),
        })?;
        Ok(EmbeddingsTask {
            model: model.clone(),
            texts: count,
            input,
            encoding: self.encoding_format.unwrap_or_default(),
        })
    }
}

/// The texts of `input`: a string or an array of strings.
fn texts_of(input: &Value) -> Result<Vec<String>, RequestError> {
    let token_ids = || RequestError {
        status: 422,
        message:
            "`input` as token ids is not supported: send the text itself (a string or an array of strings)"
                .into(),
        param: Some("input"),
        code: Some("token_ids_not_supported"),
    };
    let texts: Vec<String> = match input {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if items.is_empty() => {
            return Err(RequestError::invalid("input", "`input` must not be an empty array"));
        }
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).map(str::to_owned).collect()
        }
        Value::Array(items) if items.iter().all(|i| i.is_u64() || i.is_array()) => return Err(token_ids()),
        _ => return Err(RequestError::invalid("input", "`input` must be a string or an array of strings")),
    };
    if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
        return Err(RequestError::invalid(
            "input",
            format!("`input[{i}]` is empty; every input must hold text"),
        ));
    }
    Ok(texts)
}

/// One vector of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    /// The vector: numbers, or base64 of little-endian f32 bytes.
    #[schema(value_type = Object)]
    pub embedding: Value,
    /// Its input's position.
    pub index: usize,
}

/// Tokens read, as OpenAI counts them (here by the model's own tokenizer, `[CLS]` and
/// `[SEP]` included, after truncation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Tokens of the input.
    pub prompt_tokens: u64,
    /// The same: embeddings produce none.
    pub total_tokens: u64,
}

/// The answer of `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    /// One vector per input, in order.
    pub data: Vec<EmbeddingData>,
    /// The model that made them.
    pub model: String,
    /// Tokens read.
    pub usage: Usage,
}

impl EmbeddingsResponse {
    /// The answer for a finished task's `output` (`{"embeddings": [[..]], "tokens": n}`),
    /// or `None` when the output is not an embedding model's.
    pub fn of(model: &str, output: &Value, encoding: EncodingFormat) -> Option<Self> {
        let rows = output.get("embeddings")?.as_array()?;
        let data = rows
            .iter()
            .enumerate()
            .map(|(index, row)| {
                let embedding = match encoding {
                    EncodingFormat::Float => row.clone(),
                    EncodingFormat::Base64 => Value::String(base64_of(row)?),
                };
                Some(EmbeddingData { object: "embedding".into(), embedding, index })
            })
            .collect::<Option<Vec<_>>>()?;
        let tokens = output.get("tokens").and_then(Value::as_u64).unwrap_or(0);
        Some(Self {
            object: "list".into(),
            data,
            model: model.to_owned(),
            usage: Usage { prompt_tokens: tokens, total_tokens: tokens },
        })
    }
}

/// A vector's little-endian f32 bytes, base64: OpenAI's `encoding_format: "base64"`.
fn base64_of(row: &Value) -> Option<String> {
    let numbers = row.as_array()?;
    let mut bytes = Vec::with_capacity(numbers.len() * 4);
    for number in numbers {
        bytes.extend_from_slice(&(number.as_f64()? as f32).to_le_bytes());
    }
    Some(STANDARD.encode(bytes))
}

/// OpenAI's error body: `{"error": {message, type, param, code}}`. inferpush adds the
/// task's id and status URL when a task exists (past the wait limit, or failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// For a person.
    pub message: String,
    /// OpenAI's class: `invalid_request_error`, `authentication_error`,
    /// `permission_error`, `rate_limit_error`, `timeout_error`, `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending field.
    pub param: Option<String>,
    /// A stable code, when there is one.
    pub code: Option<String>,
    /// The task, when one was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<crate::TaskId>,
    /// Where the task's state and result can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(body: Value) -> EmbeddingsRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_string_or_an_array_of_strings_becomes_the_models_input() {
        let catalogue = catalogue::shipped();
        let task = request(json!({"model": "all-minilm-l6-v2", "input": "hello"})).task(&catalogue).unwrap();
        assert_eq!((task.model.name.as_str(), task.texts), ("all-minilm-l6-v2", 1));
        assert_eq!(task.input, json!({"texts": ["hello"]}));
        assert_eq!(task.encoding, EncodingFormat::Float);
        let body = json!({"model": "sentence-transformers/all-MiniLM-L6-v2", "input": ["a", "b"],
                          "encoding_format": "base64", "user": "u-1", "dimensions": 384});
        let task = request(body).task(&catalogue).unwrap();
        assert_eq!((task.texts, task.encoding), (2, EncodingFormat::Base64));
    }

    #[test]
    fn bad_requests_name_the_field_as_openai_does() {
        let cases = [
            (json!({"model": "text-embedding-3-small", "input": "x"}), 404, "model"),
            (json!({"model": "echo", "input": "x"}), 404, "model"),
            (json!({"model": "all-minilm-l6-v2", "input": [[1, 2], [3]]}), 422, "input"),
            (json!({"model": "all-minilm-l6-v2", "input": [101, 102]}), 422, "input"),
            (json!({"model": "all-minilm-l6-v2", "input": []}), 400, "input"),
            (json!({"model": "all-minilm-l6-v2", "input": ["ok", ""]}), 400, "input"),
            (json!({"model": "all-minilm-l6-v2", "input": {"texts": ["x"]}}), 400, "input"),
            (json!({"model": "all-minilm-l6-v2", "input": vec!["x"; 257]}), 400, "input"),
            (json!({"model": "all-minilm-l6-v2", "input": "x", "dimensions": 256}), 400, "dimensions"),
        ];
        for (body, status, param) in cases {
            let error = request(body.clone()).task(&catalogue::shipped()).unwrap_err();
            assert_eq!((error.status, error.param), (status, Some(param)), "{body}: {}", error.message);
        }
    }

    #[test]
    fn the_answer_has_openais_shape_in_both_encodings() {
        let output = json!({"embeddings": [[0.5, -1.0], [0.25, 2.0]], "dimensions": 2, "tokens": 9});
        let answer = EmbeddingsResponse::of("all-minilm-l6-v2", &output, EncodingFormat::Float).unwrap();
        let body = serde_json::to_value(&answer).unwrap();
        assert_eq!(body["object"], "list");
        assert_eq!(body["data"][1], json!({"object": "embedding", "embedding": [0.25, 2.0], "index": 1}));
        assert_eq!(body["usage"], json!({"prompt_tokens": 9, "total_tokens": 9}));
        let encoded = EmbeddingsResponse::of("all-minilm-l6-v2", &output, EncodingFormat::Base64).unwrap();
        let bytes = STANDARD.decode(encoded.data[0].embedding.as_str().unwrap()).unwrap();
        let floats: Vec<f32> = bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(floats, [0.5, -1.0]);
        assert!(EmbeddingsResponse::of("echo", &json!({"text": "x"}), EncodingFormat::Float).is_none());
    }
}
