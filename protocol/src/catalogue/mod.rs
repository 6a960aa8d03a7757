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
    /// The largest input accepted, as compact JSON bytes.
    pub max_input_bytes: usize,
    /// About how many bytes the stored result of a valid input takes (what a task counts
    /// against its user's result quota).
    pub result_bytes: fn(&Value) -> u64,
    /// For an embedding model: how `/v1/embeddings` (OpenAI's API) reaches it.
    pub embeddings: Option<EmbeddingsSpec>,
}

/// What OpenAI's embeddings API needs to know of an embedding model.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddingsSpec {
    /// Other names it answers to there (matched ignoring case), e.g. its Hugging Face id.
    pub aliases: &'static [&'static str],
    /// The size of its vectors.
    pub dimensions: usize,
    /// The model's input for these texts.
    pub input_of: fn(Vec<String>) -> Value,
}

/// Room for a record's fields besides its output (ids, status, times, channel).
pub const RECORD_OVERHEAD_BYTES: u64 = 512;

/// Every model in the catalogue.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        id: ModelId::Echo,
        name: echo::NAME,
        description: "Returns its input unchanged, after an optional `delay_ms` (0–60000); for tests and overhead.",
        input: "any JSON object; optional integer `delay_ms` 0–60000",
        output: "the input, unchanged",
        validate: echo::validate,
        max_input_bytes: echo::MAX_INPUT_BYTES,
        result_bytes: echo::result_bytes,
        embeddings: None,
    },
    ModelSpec {
        id: ModelId::MiniLm,
        name: minilm::NAME,
        description: "sentence-transformers/all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised); \
                      tokens past 256 are truncated",
        input: "{\"texts\": [string, …]}: 1–256 non-empty strings of at most 10000 characters",
        output: "{\"embeddings\": [[f32; 384], …], \"dimensions\": 384, \"tokens\": n}: one unit vector per text, \
                 in order, and the tokens the model read ([CLS] and [SEP] included, after truncation)",
        validate: minilm::validate,
        max_input_bytes: minilm::MAX_INPUT_BYTES,
        result_bytes: minilm::result_bytes,
        embeddings: Some(EmbeddingsSpec {
            aliases: minilm::ALIASES,
            dimensions: minilm::DIMENSIONS,
            input_of: minilm::input_of,
        }),
    },
];

/// Looks a model up by name.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| m.name == name)
}

/// Looks an embedding model up by name or alias, ignoring case.
pub fn find_embedding(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| {
        m.embeddings.is_some_and(|e| {
            m.name.eq_ignore_ascii_case(name) || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    })
}

/// The names of the embedding models, comma-separated (for error messages).
pub fn embedding_names() -> String {
    MODELS.iter().filter(|m| m.embeddings.is_some()).map(|m| m.name).collect::<Vec<_>>().join(", ")
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
    /// The input is larger than the model takes.
    #[error("`input` is {bytes} bytes of JSON; model `{model}` takes at most {max}")]
    TooLarge {
        /// The model.
        model: String,
        /// The input's size, as compact JSON.
        bytes: usize,
        /// The model's limit.
        max: usize,
    },
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

/// Checks `input` against `model`'s contract, its size first.
pub fn validate(model: &str, input: &Value) -> Result<(), InputError> {
    let spec = find(model).ok_or_else(|| InputError::UnknownModel(model.to_owned()))?;
    let bytes = json_bytes(input);
    if bytes > spec.max_input_bytes {
        return Err(InputError::TooLarge { model: model.to_owned(), bytes, max: spec.max_input_bytes });
    }
    (spec.validate)(input)
}

/// The size of `value` as compact JSON.
pub fn json_bytes(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("counting never fails");
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_input_over_its_models_size_limit_is_refused_with_both_sizes() {
        let big = json!({"text": "x".repeat(echo::MAX_INPUT_BYTES)});
        match validate("echo", &big) {
            Err(InputError::TooLarge { model, bytes, max }) => {
                assert_eq!((model.as_str(), max), ("echo", echo::MAX_INPUT_BYTES));
                assert_eq!(bytes, serde_json::to_vec(&big).unwrap().len());
            }
            other => panic!("{other:?}"),
        }
        let fits = json!({"text": "x".repeat(echo::MAX_INPUT_BYTES - 20)});
        assert_eq!(validate("echo", &fits), Ok(()));
        let stored = (find("echo").unwrap().result_bytes)(&fits);
        assert!(stored >= echo::MAX_INPUT_BYTES as u64 - 20, "echo stores its input: {stored}");
        let texts = json!({"texts": ["a", "b"]});
        assert!((find("all-minilm-l6-v2").unwrap().result_bytes)(&texts) > 2 * 384 * 8);
    }

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
    fn embedding_models_are_found_by_name_or_alias_ignoring_case() {
        for name in ["all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", "ALL-MINILM-L6-V2"] {
            assert_eq!(find_embedding(name).map(|m| m.id), Some(ModelId::MiniLm), "{name}");
        }
        assert!(find_embedding("echo").is_none(), "echo makes no embeddings");
        assert_eq!(embedding_names(), minilm::NAME);
        let input = (find_embedding(minilm::NAME).unwrap().embeddings.unwrap().input_of)(vec!["a".into()]);
        assert_eq!(validate(minilm::NAME, &input), Ok(()));
    }

    #[test]
    fn unknown_models_are_named_in_the_error() {
        let err = validate("gpt-9", &json!({})).unwrap_err();
        assert_eq!(err, InputError::UnknownModel("gpt-9".into()));
        assert!(err.to_string().contains("echo"), "{err}");
    }
}
