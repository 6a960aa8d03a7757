//! The catalogue: the models of the repository as the api sees them, each with its kind's
//! input rules and its card's limits. The api validates every input here before anything
//! is published, so a worker only ever sees input its model can run. Models are data (the
//! cards of `INFERPUSH_MODEL_REPOSITORY`); only their kinds are code, one module each here
//! and one engine each in the worker.

pub mod echo;
pub mod tensor;
pub mod text_embedding;
pub mod text_generation;

use inferpush_repository::{GenerationSection, Kind, Limits, Repository, Signature};
use serde_json::Value;

/// A model of the catalogue, from its card.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Routing key, queue suffix and the name clients use.
    pub name: String,
    /// Its kind: which input rules and which worker engine.
    pub kind: Kind,
    /// The card's version.
    pub version: String,
    /// One line about what it does.
    pub description: String,
    /// Other names it answers to, ignoring case (`/v1/embeddings` takes them).
    pub aliases: Vec<String>,
    /// What one task may ask of it.
    pub limits: Limits,
    /// For an embedding model: the size of its vectors.
    pub dimensions: Option<usize>,
    /// For a tensor model: its inputs and outputs.
    pub signature: Option<Signature>,
    /// For a generation model: its card's section.
    pub generation: Option<GenerationSection>,
    /// Most rows of one pass (a tensor model's batch dimension).
    pub max_batch_size: usize,
    /// The shape of `input`, in words.
    pub input: String,
    /// The shape of `output`, in words.
    pub output: String,
}

impl Entry {
    fn of(model: &inferpush_repository::Model) -> Self {
        let card = &model.card;
        let limits = card.limits.clone();
        let dimensions = card.text_embedding.as_ref().map(|section| section.dimensions);
        let (input, output) = match card.kind {
            Kind::Echo => (
                format!("any JSON object; optional integer `delay_ms` 0–{}", echo::MAX_DELAY_MS),
                "the input, unchanged".to_owned(),
            ),
            Kind::TextEmbedding => {
                let section = card.text_embedding.as_ref().expect("checked by the card");
                let d = section.dimensions;
                (
                    format!(
                        "{{\"texts\": [string, …]}}: 1–{} non-empty strings of at most {} characters",
                        limits.max_texts, limits.max_chars
                    ),
                    format!(
                        "{{\"embeddings\": [[f32; {d}], …], \"dimensions\": {d}, \"tokens\": n}}: one {}vector per \
                         text, in order, and the tokens the model read (at most {} per text, [CLS] and [SEP] included)",
                        if section.normalize { "unit " } else { "" },
                        limits.max_tokens
                    ),
                )
            }
            Kind::Tensor => (
                "KServe v2 inference request: {\"inputs\": [{name, shape, datatype, data}], \"outputs\": [{name}]}"
                    .to_owned(),
                "KServe v2 inference response: {\"model_name\", \"model_version\", \"outputs\": [{name, shape, \
                 datatype, data}]}"
                    .to_owned(),
            ),
            Kind::TextGeneration => {
                let section = card.text_generation.as_ref().expect("checked by the card");
                (
                    format!(
                        "{{\"messages\": [{{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": string}}, …]}} \
                         or {{\"prompt\": string}}; optional `max_tokens` 1–{} (default {}), `temperature` 0–2 \
                         (default {}), `top_p` (default {}), `seed`, `stop` (1–4 strings)",
                        section.max_tokens, section.max_tokens, section.temperature, section.top_p
                    ),
                    "{\"text\": string, \"finish_reason\": \"stop\"|\"length\"|\"cancelled\", \"usage\": \
                     {\"prompt_tokens\", \"completion_tokens\", \"total_tokens\"}, \"timings\": \
                     {\"time_to_first_token_ms\", \"tokens_per_second\"}}; the text also streams as \
                     `inference.delta` events"
                        .to_owned(),
                )
            }
        };
        Self {
            name: card.name.clone(),
            kind: card.kind,
            version: card.version.clone(),
            description: card.description.clone(),
            aliases: card.aliases.clone(),
            limits,
            dimensions,
            signature: model.signature.clone(),
            generation: card.text_generation.clone(),
            max_batch_size: card.batching.max_batch_size,
            input,
            output,
        }
    }

    /// Checks an input against this model's kind and limits, its size first.
    pub fn validate(&self, input: &Value) -> Result<(), InputError> {
        let bytes = json_bytes(input);
        if bytes > self.limits.max_input_bytes {
            return Err(InputError::TooLarge {
                model: self.name.clone(),
                bytes,
                max: self.limits.max_input_bytes,
            });
        }
        match self.kind {
            Kind::Echo => echo::validate(input),
            Kind::TextEmbedding => text_embedding::validate(input, &self.limits),
            Kind::Tensor => {
                let signature = self.signature.as_ref().expect("a tensor model has its signature");
                tensor::parse(input, signature, self.max_batch_size).map(|_| ())
            }
            Kind::TextGeneration => {
                let section = self.generation.as_ref().expect("a generation model has its section");
                text_generation::parse(input, section).map(|_| ())
            }
        }
    }

    /// About how many bytes the stored result of a valid input takes (what a task counts
    /// against its user's result quota).
    pub fn result_bytes(&self, input: &Value) -> u64 {
        match self.kind {
            Kind::TextEmbedding => text_embedding::result_bytes(input, self.dimensions.unwrap_or(0)),
            Kind::Tensor => {
                let signature = self.signature.as_ref().expect("a tensor model has its signature");
                tensor::result_bytes(input, signature, self.max_batch_size)
            }
            Kind::TextGeneration => {
                let section = self.generation.as_ref().expect("a generation model has its section");
                text_generation::result_bytes(input, section)
            }
            // Echo stores its input as its output.
            Kind::Echo => json_bytes(input) as u64 + RECORD_OVERHEAD_BYTES,
        }
    }

    /// In-flight slots a task of a valid input takes (see
    /// [`crate::envelope::TOKENS_PER_SLOT`]): a generation's count grows with its
    /// `max_tokens`; every other task takes one.
    pub fn slots(&self, input: &Value) -> u64 {
        match (&self.kind, &self.generation) {
            (Kind::TextGeneration, Some(section)) => text_generation::slots(input, section),
            _ => 1,
        }
    }

    /// True when it answers to `name` (its own, or an alias), ignoring case.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// Room for a record's fields besides its output (ids, status, times, channel).
pub const RECORD_OVERHEAD_BYTES: u64 = 512;

/// Every model of a repository, as the api validates against it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalogue {
    entries: Vec<Entry>,
}

impl Catalogue {
    /// The catalogue of `repository`'s cards, listed by kind (in [`Kind::ALL`]'s order), then by name.
    pub fn new(repository: &Repository) -> Self {
        let mut entries: Vec<Entry> = repository.models().iter().map(Entry::of).collect();
        let rank = |kind: Kind| Kind::ALL.iter().position(|k| *k == kind);
        entries.sort_by(|a, b| (rank(a.kind), &a.name).cmp(&(rank(b.kind), &b.name)));
        Self { entries }
    }

    /// Every model, by kind then name.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The model called `name` (exactly: routing keys are exact).
    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|m| m.name == name)
    }

    /// An embedding model by name or alias, ignoring case.
    pub fn find_embedding(&self, name: &str) -> Option<&Entry> {
        self.find_of(Kind::TextEmbedding, name)
    }

    /// The names of the embedding models, comma-separated (for error messages).
    pub fn embedding_names(&self) -> String {
        self.names_of(Kind::TextEmbedding)
    }

    /// A generation model by name or alias, ignoring case.
    pub fn find_generation(&self, name: &str) -> Option<&Entry> {
        self.find_of(Kind::TextGeneration, name)
    }

    /// The names of the generation models, comma-separated (for error messages).
    pub fn generation_names(&self) -> String {
        self.names_of(Kind::TextGeneration)
    }

    fn find_of(&self, kind: Kind, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|m| m.kind == kind && m.answers_to(name))
    }

    fn names_of(&self, kind: Kind) -> String {
        let names: Vec<&str> =
            self.entries.iter().filter(|m| m.kind == kind).map(|m| m.name.as_str()).collect();
        names.join(", ")
    }

    /// The names of every model, comma-separated (for error messages).
    pub fn known_names(&self) -> String {
        self.names().join(", ")
    }

    /// The names of every model.
    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|m| m.name.as_str()).collect()
    }

    /// Checks `input` against `model`'s kind and limits.
    pub fn validate(&self, model: &str, input: &Value) -> Result<(), InputError> {
        let entry = self
            .find(model)
            .ok_or_else(|| InputError::UnknownModel { model: model.to_owned(), known: self.known_names() })?;
        entry.validate(input)
    }
}

/// Why an input was refused, naming the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// No model of that name.
    #[error("unknown model `{model}`; known models: {known}")]
    UnknownModel {
        /// The name asked for.
        model: String,
        /// The catalogue's names, comma-separated.
        known: String,
    },
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
    /// A tensor of a `tensor` model's request does not match the model.
    #[error("{side} tensor `{name}` {problem}")]
    Tensor {
        /// `input` or `output`.
        side: String,
        /// The tensor's name.
        name: String,
        /// What is wrong with it.
        problem: String,
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

/// The catalogue of the repository inferpush ships (`models/`, cards only: files are not
/// read), for tests.
#[cfg(test)]
pub fn shipped() -> Catalogue {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let repository = Repository::load(&dir, inferpush_repository::FileCheck::None)
        .unwrap_or_else(|e| panic!("the shipped model repository: {e}"));
    Catalogue::new(&repository)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ECHO_MAX: usize = 512 * 1024;

    #[test]
    fn an_input_over_its_models_size_limit_is_refused_with_both_sizes() {
        let catalogue = shipped();
        let big = json!({"text": "x".repeat(ECHO_MAX)});
        match catalogue.validate("echo", &big) {
            Err(InputError::TooLarge { model, bytes, max }) => {
                assert_eq!((model.as_str(), max), ("echo", ECHO_MAX));
                assert_eq!(bytes, serde_json::to_vec(&big).unwrap().len());
            }
            other => panic!("{other:?}"),
        }
        let fits = json!({"text": "x".repeat(ECHO_MAX - 20)});
        assert_eq!(catalogue.validate("echo", &fits), Ok(()));
        let stored = catalogue.find("echo").unwrap().result_bytes(&fits);
        assert!(stored >= ECHO_MAX as u64 - 20, "echo stores its input: {stored}");
        let texts = json!({"texts": ["a", "b"]});
        assert!(catalogue.find("all-minilm-l6-v2").unwrap().result_bytes(&texts) > 2 * 384 * 8);
    }

    #[test]
    fn the_shipped_cards_keep_the_documented_names_limits_and_shapes() {
        let catalogue = shipped();
        for name in ["echo", "all-minilm-l6-v2"] {
            assert!(catalogue.find(name).is_some(), "{name}");
        }
        let minilm = catalogue.find("all-minilm-l6-v2").unwrap();
        assert_eq!(
            (minilm.limits.max_texts, minilm.limits.max_chars, minilm.dimensions),
            (256, 10_000, Some(384))
        );
        assert!(minilm.input.contains("1–256") && minilm.output.contains("f32; 384"), "{minilm:?}");
    }

    #[test]
    fn validation_dispatches_to_the_kinds_rules_with_the_cards_limits() {
        let catalogue = shipped();
        assert_eq!(catalogue.validate("echo", &json!({"delay_ms": 5})), Ok(()));
        assert!(catalogue.validate("echo", &json!([])).is_err());
        assert!(catalogue.validate("all-minilm-l6-v2", &json!({"texts": ["a"]})).is_ok());
        assert!(catalogue.validate("all-minilm-l6-v2", &json!({})).is_err());
        let many = json!({"texts": vec!["x"; 257]});
        assert!(catalogue.validate("all-minilm-l6-v2", &many).unwrap_err().to_string().contains("1 to 256"));
    }

    #[test]
    fn embedding_models_are_found_by_name_or_alias_ignoring_case() {
        let catalogue = shipped();
        for name in ["all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", "ALL-MINILM-L6-V2"] {
            assert_eq!(
                catalogue.find_embedding(name).map(|m| m.name.as_str()),
                Some("all-minilm-l6-v2"),
                "{name}"
            );
        }
        assert!(catalogue.find_embedding("echo").is_none(), "echo makes no embeddings");
        assert!(catalogue.embedding_names().contains("all-minilm-l6-v2"));
        let input = text_embedding::input_of(vec!["a".into()]);
        assert_eq!(catalogue.validate("all-minilm-l6-v2", &input), Ok(()));
    }

    #[test]
    fn unknown_models_are_named_in_the_error_with_the_known_ones() {
        let err = shipped().validate("gpt-9", &json!({})).unwrap_err();
        assert!(matches!(&err, InputError::UnknownModel { model, .. } if model == "gpt-9"));
        assert!(err.to_string().contains("echo"), "{err}");
    }
}
