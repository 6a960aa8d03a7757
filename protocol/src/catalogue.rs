//! The model catalogue: which models exist and what input each accepts.
//!
//! The api checks every input here before anything is published, so a worker only
//! ever sees input its model can run.

use serde::Serialize;
use serde_json::Value;

/// Longest `delay_ms` the echo model accepts: one minute.
pub const ECHO_MAX_DELAY_MS: u64 = 60_000;
/// Name of the sentence-embedding model.
pub const MINILM: &str = "all-minilm-l6-v2";
/// Most texts in one embedding task.
pub const MINILM_MAX_TEXTS: usize = 64;
/// Longest text, in characters (tokens past 256 are truncated, as the original model does).
pub const MINILM_MAX_CHARS: usize = 10_000;
/// Size of each embedding.
pub const MINILM_DIMENSIONS: usize = 384;

/// A model the platform knows, as `GET /v1/models` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSpec {
    /// Catalogue name, routing key and queue suffix.
    pub name: &'static str,
    /// One line about what it does.
    pub description: &'static str,
    /// The shape of `input`.
    pub input: &'static str,
    /// The shape of `output`.
    pub output: &'static str,
}

/// Every model in the catalogue.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "echo",
        description: "Returns its input unchanged, after an optional `delay_ms` (0–60000); for tests and overhead.",
        input: "any JSON object; optional integer `delay_ms` 0–60000",
        output: "the input, unchanged",
    },
    ModelSpec {
        name: MINILM,
        description: "sentence-transformers/all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised); \
                      tokens past 256 are truncated",
        input: "{\"texts\": [string, …]}: 1–64 non-empty strings of at most 10000 characters",
        output: "{\"embeddings\": [[f32; 384], …], \"dimensions\": 384}: one unit vector per text, in order",
    },
];

/// Looks a model up by name.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| m.name == name)
}

/// Why an input was refused, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// No model of that name.
    #[error("unknown model `{0}`; known models: {known}", known = known_names())]
    UnknownModel(String),
    /// A field has the wrong type or value.
    #[error("`{field}` {problem}")]
    Invalid {
        /// JSON path of the field, e.g. `input.delay_ms`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

fn known_names() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
}

fn invalid(field: &str, problem: impl Into<String>) -> InputError {
    InputError::Invalid { field: field.to_owned(), problem: problem.into() }
}

/// Checks `input` against `model`'s contract.
pub fn validate(model: &str, input: &Value) -> Result<(), InputError> {
    match model {
        "echo" => validate_echo(input),
        MINILM => texts(input).map(|_| ()),
        other => Err(InputError::UnknownModel(other.to_owned())),
    }
}

fn validate_echo(input: &Value) -> Result<(), InputError> {
    let object = input.as_object().ok_or_else(|| invalid("input", "must be a JSON object"))?;
    if let Some(delay) = object.get("delay_ms") {
        let in_range = delay.as_u64().filter(|ms| *ms <= ECHO_MAX_DELAY_MS);
        if in_range.is_none() {
            return Err(invalid(
                "input.delay_ms",
                format!("must be an integer from 0 to {ECHO_MAX_DELAY_MS}"),
            ));
        }
    }
    Ok(())
}

/// The `texts` of an embedding input, checked: 1–64 non-empty strings of at most 10000
/// characters each.
pub fn texts(input: &Value) -> Result<Vec<&str>, InputError> {
    let object = input.as_object().ok_or_else(|| invalid("input", "must be a JSON object with `texts`"))?;
    if let Some(extra) = object.keys().find(|k| *k != "texts") {
        return Err(invalid(&format!("input.{extra}"), "is not a field of this model's input"));
    }
    let texts = object
        .get("texts")
        .ok_or_else(|| invalid("input.texts", "is required: an array of 1–64 strings"))?
        .as_array()
        .ok_or_else(|| invalid("input.texts", "must be an array of strings"))?;
    if texts.is_empty() || texts.len() > MINILM_MAX_TEXTS {
        return Err(invalid(
            "input.texts",
            format!("must hold 1 to {MINILM_MAX_TEXTS} strings, not {}", texts.len()),
        ));
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let field = format!("input.texts[{i}]");
            let text = text.as_str().ok_or_else(|| invalid(&field, "must be a string"))?;
            if text.trim().is_empty() {
                return Err(invalid(&field, "must not be empty"));
            }
            let chars = text.chars().count();
            if chars > MINILM_MAX_CHARS {
                return Err(invalid(
                    &field,
                    format!("is {chars} characters; the limit is {MINILM_MAX_CHARS}"),
                ));
            }
            Ok(text)
        })
        .collect()
}

/// The echo model's delay for an input the catalogue accepted (0 when absent).
pub fn echo_delay_ms(input: &Value) -> u64 {
    input.get("delay_ms").and_then(Value::as_u64).unwrap_or(0).min(ECHO_MAX_DELAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn echo_accepts_objects_with_or_without_delay() {
        assert_eq!(validate("echo", &json!({})), Ok(()));
        assert_eq!(validate("echo", &json!({"text": "hi", "delay_ms": 0})), Ok(()));
        assert_eq!(validate("echo", &json!({"delay_ms": 60000})), Ok(()));
    }

    #[test]
    fn echo_refuses_bad_delays_naming_the_field() {
        for delay in [json!(-1), json!(60001), json!(1.5), json!("10"), json!(null), json!(1e30)] {
            let err = validate("echo", &json!({ "delay_ms": delay })).unwrap_err();
            assert!(err.to_string().starts_with("`input.delay_ms`"), "{err}");
        }
    }

    #[test]
    fn echo_refuses_non_objects() {
        for input in [json!([]), json!("text"), json!(3), json!(null)] {
            assert!(matches!(validate("echo", &input), Err(InputError::Invalid { .. })));
        }
    }

    #[test]
    fn unknown_models_are_named_in_the_error() {
        let err = validate("gpt-9", &json!({})).unwrap_err();
        assert_eq!(err, InputError::UnknownModel("gpt-9".into()));
        assert!(err.to_string().contains("echo"), "{err}");
    }

    #[test]
    fn embedding_input_takes_one_to_64_texts() {
        assert_eq!(texts(&json!({"texts": ["a", "b"]})).unwrap(), ["a", "b"]);
        assert!(validate(MINILM, &json!({"texts": vec!["x"; 64]})).is_ok());
    }

    #[test]
    fn bad_embedding_inputs_name_the_field() {
        let long = "x".repeat(MINILM_MAX_CHARS + 1);
        let cases = [
            (json!({}), "`input.texts`"),
            (json!({"texts": []}), "`input.texts`"),
            (json!({"texts": "one"}), "`input.texts`"),
            (json!({"texts": vec!["x"; 65]}), "`input.texts`"),
            (json!({"texts": ["ok", 3]}), "`input.texts[1]`"),
            (json!({"texts": ["ok", "  "]}), "`input.texts[1]`"),
            (json!({"texts": [long]}), "`input.texts[0]`"),
            (json!({"texts": ["ok"], "extra": 1}), "`input.extra`"),
            (json!(["x"]), "`input`"),
        ];
        for (input, field) in cases {
            let err = validate(MINILM, &input).unwrap_err().to_string();
            assert!(err.starts_with(field), "{input}: {err}");
        }
    }

    #[test]
    fn echo_delay_defaults_to_zero() {
        assert_eq!(echo_delay_ms(&json!({})), 0);
        assert_eq!(echo_delay_ms(&json!({"delay_ms": 25})), 25);
    }
}
