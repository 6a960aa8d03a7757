//! The model catalogue: which models exist and what input each accepts.
//!
//! The api checks every input here before anything is published, so a worker only
//! ever sees input its model can run.

use serde::Serialize;
use serde_json::Value;

/// Longest `delay_ms` the echo model accepts: one minute.
pub const ECHO_MAX_DELAY_MS: u64 = 60_000;

/// A model the platform knows, as `GET /v1/models` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSpec {
    /// Catalogue name, routing key and queue suffix.
    pub name: &'static str,
    /// One line about what it does.
    pub description: &'static str,
}

/// Every model in the catalogue.
pub const MODELS: &[ModelSpec] = &[ModelSpec {
    name: "echo",
    description: "Returns its input unchanged, after an optional `delay_ms` (0–60000).",
}];

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
    fn echo_delay_defaults_to_zero() {
        assert_eq!(echo_delay_ms(&json!({})), 0);
        assert_eq!(echo_delay_ms(&json!({"delay_ms": 25})), 25);
    }
}
