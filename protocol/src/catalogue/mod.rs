//! The model catalogue, the one table of which models exist: each entry's name, what it
//! takes and gives, and the function that checks its input. The api validates every
//! input here before anything is published, so a worker only ever sees input its model
//! can run; the worker builds its registry from the same [`ModelId`]s.
//!
//! Adding a model: a variant of [`ModelId`], a row of [`MODELS`], a module here with its
//! input rules, and the worker's engine module (the worker's `match` on [`ModelId`] does
//! not compile until it has one).

pub mod echo;
pub mod minilm;

use serde_json::Value;

/// A model of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelId {
    /// [`echo`]: returns its input.
    Echo,
    /// [`minilm`]: all-MiniLM-L6-v2 sentence embeddings.
    MiniLm,
}

impl ModelId {
    /// Its row of the catalogue.
    pub fn spec(self) -> &'static ModelSpec {
        MODELS.iter().find(|m| m.id == self).expect("every ModelId has a row in MODELS")
    }

    /// Its catalogue name: routing key and queue suffix.
    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

/// A model the platform knows (`GET /v1/models` lists them as [`crate::http::ModelInfo`]).
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Which model.
    pub id: ModelId,
    /// Catalogue name, routing key and queue suffix.
    pub name: &'static str,
    /// One line about what it does.
    pub description: &'static str,
    /// The shape of `input`.
    pub input: &'static str,
    /// The shape of `output`.
    pub output: &'static str,
    /// Checks an input against this model's rules.
    pub validate: fn(&Value) -> Result<(), InputError>,
}

/// Every model in the catalogue.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        id: ModelId::Echo,
        name: echo::NAME,
        description: "Returns its input unchanged, after an optional `delay_ms` (0–60000); for tests and overhead.",
        input: "any JSON object; optional integer `delay_ms` 0–60000",
        output: "the input, unchanged",
        validate: echo::validate,
    },
    ModelSpec {
        id: ModelId::MiniLm,
        name: minilm::NAME,
        description: "sentence-transformers/all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised); \
                      tokens past 256 are truncated",
        input: "{\"texts\": [string, …]}: 1–64 non-empty strings of at most 10000 characters",
        output: "{\"embeddings\": [[f32; 384], …], \"dimensions\": 384}: one unit vector per text, in order",
        validate: minilm::validate,
    },
];

/// Looks a model up by name.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| m.name == name)
}

/// The names of every model, comma-separated (for error messages).
pub fn known_names() -> String {
    MODELS.iter().map(|m| m.name).collect::<Vec<_>>().join(", ")
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

fn invalid(field: &str, problem: impl Into<String>) -> InputError {
    InputError::Invalid { field: field.to_owned(), problem: problem.into() }
}

/// Checks `input` against `model`'s contract.
pub fn validate(model: &str, input: &Value) -> Result<(), InputError> {
    let spec = find(model).ok_or_else(|| InputError::UnknownModel(model.to_owned()))?;
    (spec.validate)(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_id_has_exactly_one_row_and_names_are_unique() {
        for id in [ModelId::Echo, ModelId::MiniLm] {
            assert_eq!(MODELS.iter().filter(|m| m.id == id).count(), 1, "{id:?}");
            assert_eq!(find(id.name()).unwrap().id, id);
        }
        let mut names: Vec<_> = MODELS.iter().map(|m| m.name).collect();
        names.dedup();
        assert_eq!(names.len(), MODELS.len());
    }

    #[test]
    fn validation_dispatches_to_the_models_own_rules() {
        assert_eq!(validate("echo", &json!({"delay_ms": 5})), Ok(()));
        assert!(validate("echo", &json!([])).is_err());
        assert!(validate(minilm::NAME, &json!({"texts": ["a"]})).is_ok());
        assert!(validate(minilm::NAME, &json!({})).is_err());
    }

    #[test]
    fn unknown_models_are_named_in_the_error() {
        let err = validate("gpt-9", &json!({})).unwrap_err();
        assert_eq!(err, InputError::UnknownModel("gpt-9".into()));
        assert!(err.to_string().contains("echo"), "{err}");
    }
}
