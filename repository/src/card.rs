//! A model's card, `model.toml`: what it is, which files it needs, and how it is served.

use serde::Deserialize;

/// Kinds of model: a closed set, each served by an engine of the worker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Returns its input (tests and overhead).
    Echo,
    /// Sentence embeddings: a tokenizer and an encoder, pooled.
    TextEmbedding,
    /// Any ONNX model, tensors in and out (KServe's Open Inference Protocol v2).
    Tensor,
    /// Generated text from a chat or a prompt, streamed as it is written (a GGUF model).
    TextGeneration,
}

impl Kind {
    /// Every kind, as cards name them.
    pub const ALL: [Kind; 4] = [Kind::Echo, Kind::TextEmbedding, Kind::Tensor, Kind::TextGeneration];

    /// Its name in cards.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Echo => "echo",
            Kind::TextEmbedding => "text-embedding",
            Kind::Tensor => "tensor",
            Kind::TextGeneration => "text-generation",
        }
    }

    fn parse(name: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
            let kinds: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
            format!("unknown kind `{name}`; the kinds are {}", kinds.join(", "))
        })
    }
}

/// One file the model needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative to the card's folder.
    pub path: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
}

/// What one task may ask of the model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The largest input, as compact JSON bytes.
    pub max_input_bytes: usize,
    /// Most texts in one task (text kinds).
    pub max_texts: usize,
    /// Longest text, in characters (text kinds).
    pub max_chars: usize,
    /// Tokens read per text; longer texts are truncated (text kinds).
    pub max_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_input_bytes: 1024 * 1024, max_texts: 256, max_chars: 10_000, max_tokens: 512 }
    }
}

/// How a worker groups tasks into forward passes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batching {
    /// Most rows in one pass.
    pub max_batch_size: usize,
    /// Most tokens in one pass, padding included (text kinds).
    pub max_batch_tokens: usize,
    /// Unacked tasks per queue of this model on one worker.
    pub prefetch: u16,
}

impl Default for Batching {
    fn default() -> Self {
        Self { max_batch_size: 32, max_batch_tokens: 2048, prefetch: 64 }
    }
}

/// Where and how the model prefers to run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    /// `auto`, `ort` or `candle`.
    pub engine: String,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
}

impl Default for Runtime {
    fn default() -> Self {
        Self { engine: "auto".into(), device: "cpu".into() }
    }
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean of the tokens' vectors, padding left out.
    Mean,
    /// The first token's vector.
    Cls,
}

/// A `text-embedding` model's own settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSection {
    /// `tokenizer.json` (Hugging Face tokenizers).
    pub tokenizer: String,
    /// The ONNX graph (ONNX Runtime's engine), if any.
    #[serde(default)]
    pub onnx: Option<String>,
    /// The safetensors weights and their `config.json` (candle's engine), if any.
    #[serde(default)]
    pub safetensors: Option<String>,
    /// The BERT `config.json` that goes with the safetensors weights.
    #[serde(default)]
    pub config: Option<String>,
    /// How token vectors are pooled.
    pub pooling: Pooling,
    /// Whether each vector is scaled to unit length.
    pub normalize: bool,
    /// The vectors' size.
    pub dimensions: usize,
}

/// One tensor of a `tensor` model, as the card narrows it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// Its name in the graph.
    pub name: String,
    /// KServe's datatype name (`FP32`, `INT64`, `INT32`, `BOOL`, …).
    #[serde(default)]
    pub datatype: Option<String>,
    /// Its shape, `-1` for a dynamic dimension.
    #[serde(default)]
    pub shape: Option<Vec<i64>>,
}

/// A `tensor` model's own settings: its graph, and optionally narrower tensors than the
/// graph declares (the rest is read from the file, as Triton's auto-complete does).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSection {
    /// The ONNX graph.
    pub onnx: String,
    /// Inputs, narrowed.
    #[serde(default)]
    pub inputs: Vec<TensorSpec>,
    /// Outputs, narrowed (or only some of them offered).
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
}

/// A `text-generation` model's own settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationSection {
    /// The GGUF file: weights, tokenizer and chat template.
    pub gguf: String,
    /// Prompt plus output tokens of one task, at most; at most the file's own context
    /// (the file's when not set).
    #[serde(default)]
    pub context_length: Option<usize>,
    /// Most tokens one task generates, and what it gets when it does not ask.
    #[serde(default = "GenerationSection::default_max_tokens")]
    pub max_tokens: usize,
    /// Sequences one worker decodes together (continuous batching).
    #[serde(default = "GenerationSection::default_max_sequences")]
    pub max_concurrent_sequences: usize,
    /// Sampling temperature when a task does not say (0: greedy).
    #[serde(default = "GenerationSection::default_temperature")]
    pub temperature: f64,
    /// Nucleus sampling's mass when a task does not say (1: off).
    #[serde(default = "GenerationSection::default_top_p")]
    pub top_p: f64,
}

impl GenerationSection {
    fn default_max_tokens() -> usize {
        512
    }
    fn default_max_sequences() -> usize {
        8
    }
    fn default_temperature() -> f64 {
        1.
    }
    fn default_top_p() -> f64 {
        1.
    }
}

/// A model's card.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    /// Routing key, queue suffix and the name clients use.
    pub name: String,
    /// What kind of model it is.
    pub kind: Kind,
    /// Its version, as its team writes it; results name it.
    pub version: String,
    /// One line about what it does.
    pub description: String,
    /// Other names it answers to (e.g. its Hugging Face id), ignoring case.
    pub aliases: Vec<String>,
    /// The files it needs.
    pub files: Vec<FileEntry>,
    /// What a task may ask of it.
    pub limits: Limits,
    /// How tasks are grouped.
    pub batching: Batching,
    /// Where it prefers to run.
    pub runtime: Runtime,
    /// `text-embedding` settings.
    pub text_embedding: Option<EmbeddingSection>,
    /// `tensor` settings.
    pub tensor: Option<TensorSection>,
    /// `text-generation` settings.
    pub text_generation: Option<GenerationSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCard {
    name: String,
    kind: String,
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    files: Vec<FileEntry>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    batching: Batching,
    #[serde(default)]
    runtime: Runtime,
    #[serde(default)]
    text_embedding: Option<EmbeddingSection>,
    #[serde(default)]
    tensor: Option<TensorSection>,
    #[serde(default)]
    text_generation: Option<GenerationSection>,
}

/// A field at fault (if one is), and the rule it breaks.
pub(crate) type Fault = (Option<String>, String);

fn fault(field: &str, rule: impl Into<String>) -> Fault {
    (Some(field.to_owned()), rule.into())
}

impl Card {
    /// Parses and checks a card's text.
    pub fn parse(text: &str) -> Result<Self, Fault> {
        let raw: RawCard = toml::from_str(text).map_err(|e| {
            let field = e.span().and_then(|span| field_at(text, span.start));
            (field, e.message().to_owned())
        })?;
        let kind = Kind::parse(&raw.kind).map_err(|rule| fault("kind", rule))?;
        let card = Card {
            name: raw.name,
            kind,
            version: raw.version,
            description: raw.description,
            aliases: raw.aliases,
            files: raw.files,
            limits: raw.limits,
            batching: raw.batching,
            runtime: raw.runtime,
            text_embedding: raw.text_embedding,
            tensor: raw.tensor,
            text_generation: raw.text_generation,
        };
        card.check()?;
        Ok(card)
    }

    fn check(&self) -> Result<(), Fault> {
        if !is_model_name(&self.name) {
            return Err(fault(
                "name",
                format!(
                    "`{}` is not a model name: 1–64 of a-z, 0-9, `.`, `_` and `-`, starting with a letter or digit \
                     (it names a queue and a routing key)",
                    self.name
                ),
            ));
        }
        if self.version.trim().is_empty() {
            return Err(fault("version", "must not be empty"));
        }
        for (i, alias) in self.aliases.iter().enumerate() {
            if alias.trim().is_empty() || alias.len() > 200 {
                return Err(fault(&format!("aliases[{i}]"), "must be 1–200 characters"));
            }
        }
        for (i, file) in self.files.iter().enumerate() {
            if !is_relative_path(&file.path) {
                return Err(fault(
                    &format!("files[{i}].path"),
                    format!("`{}` must be a relative path inside the model's folder", file.path),
                ));
            }
            if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(fault(&format!("files[{i}].sha256"), "must be 64 hexadecimal digits"));
            }
        }
        let positive = [
            ("limits.max_input_bytes", self.limits.max_input_bytes),
            ("limits.max_texts", self.limits.max_texts),
            ("limits.max_chars", self.limits.max_chars),
            ("limits.max_tokens", self.limits.max_tokens),
            ("batching.max_batch_size", self.batching.max_batch_size),
            ("batching.max_batch_tokens", self.batching.max_batch_tokens),
            ("batching.prefetch", self.batching.prefetch as usize),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(fault(field, "must be at least 1"));
        }
        if !["auto", "ort", "candle"].contains(&self.runtime.engine.as_str()) {
            return Err(fault(
                "runtime.engine",
                format!("`{}` is not an engine: auto, ort or candle", self.runtime.engine),
            ));
        }
        let device = self.runtime.device.as_str();
        let cuda_n = device.strip_prefix("cuda:").is_some_and(|n| n.parse::<u32>().is_ok());
        if !(device == "cpu" || device == "cuda" || cuda_n) {
            return Err(fault("runtime.device", format!("`{device}` is not a device: cpu, cuda or cuda:N")));
        }
        self.check_sections()
    }

    /// Each kind has its own section, and only its own.
    fn check_sections(&self) -> Result<(), Fault> {
        let sections = [
            (Kind::TextEmbedding, "text_embedding", self.text_embedding.is_some()),
            (Kind::Tensor, "tensor", self.tensor.is_some()),
            (Kind::TextGeneration, "text_generation", self.text_generation.is_some()),
        ];
        if let Some((_, section, _)) =
            sections.iter().find(|(kind, _, present)| *present && *kind != self.kind)
        {
            return Err(fault(
                section,
                format!("is the section of another kind; this card's kind is `{}`", self.kind.name()),
            ));
        }
        match self.kind {
            Kind::Echo => {}
            Kind::TextEmbedding => {
                let section = self
                    .text_embedding
                    .as_ref()
                    .ok_or_else(|| fault("text_embedding", "is required for kind `text-embedding`"))?;
                self.listed("text_embedding.tokenizer", &section.tokenizer)?;
                if section.onnx.is_none() && section.safetensors.is_none() {
                    return Err(fault("text_embedding", "needs `onnx` or `safetensors` (or both)"));
                }
                if let Some(onnx) = &section.onnx {
                    self.listed("text_embedding.onnx", onnx)?;
                }
                if let Some(weights) = &section.safetensors {
                    self.listed("text_embedding.safetensors", weights)?;
                    let config = section
                        .config
                        .as_ref()
                        .ok_or_else(|| fault("text_embedding.config", "is required with `safetensors`"))?;
                    self.listed("text_embedding.config", config)?;
                }
                if section.dimensions == 0 {
                    return Err(fault("text_embedding.dimensions", "must be at least 1"));
                }
            }
            Kind::Tensor => {
                let section =
                    self.tensor.as_ref().ok_or_else(|| fault("tensor", "is required for kind `tensor`"))?;
                self.listed("tensor.onnx", &section.onnx)?;
                for (side, specs) in [("inputs", &section.inputs), ("outputs", &section.outputs)] {
                    for (i, spec) in specs.iter().enumerate() {
                        if let Some(datatype) = &spec.datatype
                            && !DATATYPES.contains(&datatype.as_str())
                        {
                            return Err(fault(
                                &format!("tensor.{side}[{i}].datatype"),
                                format!("`{datatype}` is not a datatype: {}", DATATYPES.join(", ")),
                            ));
                        }
                        if let Some(shape) = &spec.shape
                            && shape.iter().any(|d| *d < -1 || *d == 0)
                        {
                            return Err(fault(
                                &format!("tensor.{side}[{i}].shape"),
                                "dimensions are positive, or -1 for a dynamic one",
                            ));
                        }
                    }
                }
            }
            Kind::TextGeneration => {
                let section = self
                    .text_generation
                    .as_ref()
                    .ok_or_else(|| fault("text_generation", "is required for kind `text-generation`"))?;
                self.listed("text_generation.gguf", &section.gguf)?;
                let counts = [
                    ("text_generation.context_length", section.context_length.unwrap_or(1)),
                    ("text_generation.max_tokens", section.max_tokens),
                    ("text_generation.max_concurrent_sequences", section.max_concurrent_sequences),
                ];
                if let Some((field, _)) = counts.iter().find(|(_, value)| *value == 0) {
                    return Err(fault(field, "must be at least 1"));
                }
                if !(0.0..=2.0).contains(&section.temperature) {
                    return Err(fault("text_generation.temperature", "must be from 0 to 2"));
                }
                if !(section.top_p > 0. && section.top_p <= 1.) {
                    return Err(fault("text_generation.top_p", "must be over 0 and at most 1"));
                }
            }
        }
        Ok(())
    }

    /// A file a section names must be one of the card's `files` (so it has a checksum).
    fn listed(&self, field: &str, path: &str) -> Result<(), Fault> {
        if self.files.iter().any(|f| f.path == path) {
            Ok(())
        } else {
            Err(fault(
                field,
                format!("`{path}` is not among the card's `files` (each file needs its SHA-256 there)"),
            ))
        }
    }

    /// The SHA-256 of one of its files, as the card gives it.
    pub fn sha256_of(&self, path: &str) -> Option<&str> {
        self.files.iter().find(|f| f.path == path).map(|f| f.sha256.as_str())
    }
}

/// KServe's datatype names the `tensor` kind serves.
pub const DATATYPES: [&str; 7] = ["BOOL", "UINT8", "INT8", "INT32", "INT64", "FP32", "FP64"];

fn is_model_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
}

fn is_relative_path(path: &str) -> bool {
    let path = std::path::Path::new(path);
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// The dotted key whose line holds byte `offset` of `text`, best effort: the table header
/// above it and the key on that line (`limits.max_texts`).
fn field_at(text: &str, offset: usize) -> Option<String> {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    let line = text[line_start..line_end].trim();
    let key = line.split('=').next().map(str::trim).filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    match (table, key) {
        (Some(table), Some(key)) => Some(format!("{table}.{key}")),
        (None, Some(key)) => Some(key.to_owned()),
        (Some(table), None) => Some(table),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = r#"
name = "echo"
kind = "echo"
version = "1"
description = "Returns its input."
"#;

    const EMBEDDING: &str = r#"
name = "all-minilm-l6-v2"
kind = "text-embedding"
version = "1"
aliases = ["sentence-transformers/all-MiniLM-L6-v2"]

[[files]]
path = "tokenizer.json"
sha256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

[[files]]
path = "model.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"

[limits]
max_texts = 256
max_tokens = 256

[text_embedding]
tokenizer = "tokenizer.json"
onnx = "model.onnx"
pooling = "mean"
normalize = true
dimensions = 384
"#;

    fn refusal(text: &str) -> (Option<String>, String) {
        Card::parse(text).expect_err("refused")
    }

    #[test]
    fn a_card_gives_its_kind_files_limits_and_defaults_for_the_rest() {
        let card = Card::parse(EMBEDDING).unwrap();
        assert_eq!((card.name.as_str(), card.kind), ("all-minilm-l6-v2", Kind::TextEmbedding));
        assert_eq!(card.limits.max_tokens, 256);
        assert_eq!(card.limits.max_input_bytes, 1024 * 1024, "a default");
        assert_eq!(card.batching, Batching::default());
        assert_eq!(card.text_embedding.as_ref().unwrap().pooling, Pooling::Mean);
        assert_eq!(card.sha256_of("tokenizer.json").map(str::len), Some(64));
        assert_eq!(Card::parse(ECHO).unwrap().kind, Kind::Echo);
    }

    #[test]
    fn an_unknown_kind_is_refused_listing_the_kinds() {
        let (field, rule) = refusal(&ECHO.replace(r#"kind = "echo""#, r#"kind = "diffusion""#));
        assert_eq!(field.as_deref(), Some("kind"));
        assert!(rule.contains("`diffusion`") && rule.contains("echo, text-embedding, tensor"), "{rule}");
    }

    #[test]
    fn unknown_and_ill_typed_fields_are_named() {
        let (field, rule) = refusal(&format!("{EMBEDDING}\ncolour = \"blue\"\n"));
        assert!(rule.contains("unknown field `colour`"), "{rule}");
        assert_eq!(field.as_deref(), Some("text_embedding.colour"));
        let (field, rule) = refusal(&EMBEDDING.replace("max_texts = 256", "max_texts = \"many\""));
        assert_eq!(field.as_deref(), Some("limits.max_texts"));
        assert!(rule.contains("invalid type"), "{rule}");
        let (field, _) = refusal(&EMBEDDING.replace("pooling = \"mean\"", "pooling = \"max\""));
        assert_eq!(field.as_deref(), Some("text_embedding.pooling"));
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases = [
            (ECHO.replace("\"echo\"\nkind", "\"Echo Model\"\nkind"), "name"),
            (ECHO.replace("version = \"1\"", "version = \" \""), "version"),
            (format!("{ECHO}\n[runtime]\nengine = \"tensorrt\"\n"), "runtime.engine"),
            (format!("{ECHO}\n[runtime]\ndevice = \"tpu\"\n"), "runtime.device"),
            (format!("{ECHO}\n[batching]\nmax_batch_size = 0\n"), "batching.max_batch_size"),
            (EMBEDDING.replace("onnx = \"model.onnx\"", "onnx = \"other.onnx\""), "text_embedding.onnx"),
            (EMBEDDING.replace("path = \"model.onnx\"", "path = \"../model.onnx\""), "files[1].path"),
            (EMBEDDING.replace("sha256 = \"0000", "sha256 = \"zz00"), "files[1].sha256"),
            (EMBEDDING.replace("kind = \"text-embedding\"", "kind = \"echo\""), "text_embedding"),
            (ECHO.replace("kind = \"echo\"", "kind = \"tensor\""), "tensor"),
        ];
        for (text, expected) in cases {
            let (field, rule) = refusal(&text);
            assert_eq!(field.as_deref(), Some(expected), "{rule}");
        }
    }
}
