//! The model repository: `INFERPUSH_MODEL_REPOSITORY` (default `models/`) holds one folder
//! per model, each with a `model.toml` card saying what the model is (its [`Kind`], a
//! closed set, each served by a tested engine), which files it needs (relative paths with
//! their SHA-256), its limits, batching, engine and device preferences, and the other names
//! it answers to. Models are data; only kinds are code.
//!
//! [`Repository::load`] reads every card and refuses the whole repository at the first
//! wrong one, naming the file, the field and the rule: an unknown kind (listing the kinds),
//! an unknown or ill-typed field, a missing file or one whose checksum differs (when asked
//! to look at files), two cards with one name or alias. Folders without a card (a cache,
//! a runtime library) are not models and are passed over.

mod card;
mod files;
pub mod onnx;
mod tensor;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use card::{
    Batching, Card, EmbeddingSection, FileEntry, GenerationSection, Kind, Limits, Pooling, Runtime,
    TensorSection, TensorSpec,
};
pub use files::FileCheck;
pub use onnx::{Signature, TensorInfo};

/// The name of a model's card in its folder.
pub const CARD_FILE: &str = "model.toml";

/// Why a repository was refused: the file, the field (when one is at fault) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}{rule}", file.display(), field.as_ref().map(|f| format!("`{f}`: ")).unwrap_or_default())]
pub struct CardError {
    /// The card (or the repository folder) at fault.
    pub file: PathBuf,
    /// The field at fault, as a dotted path (`limits.max_texts`).
    pub field: Option<String>,
    /// What rule it breaks.
    pub rule: String,
}

impl CardError {
    pub(crate) fn new(file: &Path, field: Option<&str>, rule: impl Into<String>) -> Self {
        Self { file: file.to_owned(), field: field.map(str::to_owned), rule: rule.into() }
    }
}

/// A card and the folder it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The card.
    pub card: Card,
    /// Its folder; the card's file paths are relative to it.
    pub dir: PathBuf,
    /// For a `tensor` card: its inputs and outputs, read from the graph and narrowed by
    /// the card (or the card's alone where the graph is not there to read).
    pub signature: Option<Signature>,
}

impl Model {
    /// The absolute path of one of the card's files.
    pub fn file(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

/// Every model of a repository, in name order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Repository {
    models: Vec<Model>,
}

impl Repository {
    /// Reads and checks every card under `dir`; `files` says how far the model files are
    /// checked (the api never reads weights; a worker checks those of the models it serves).
    pub fn load(dir: &Path, files: FileCheck) -> Result<Self, CardError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| CardError::new(dir, None, format!("cannot read the model repository: {e}")))?;
        let mut folders: Vec<PathBuf> =
            entries.filter_map(|entry| entry.ok().map(|e| e.path())).filter(|path| path.is_dir()).collect();
        folders.sort();
        let mut models = Vec::new();
        for folder in folders {
            let path = folder.join(CARD_FILE);
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| CardError::new(&path, None, format!("cannot read the card: {e}")))?;
            let card =
                Card::parse(&text).map_err(|(field, rule)| CardError::new(&path, field.as_deref(), rule))?;
            files::check(&card, &folder, files)
                .map_err(|(field, rule)| CardError::new(&path, Some(&field), rule))?;
            let signature = match &card.tensor {
                Some(section) => Some(
                    tensor::signature(section, &folder)
                        .map_err(|(field, rule)| CardError::new(&path, Some(&field), rule))?,
                ),
                None => None,
            };
            models.push(Model { card, dir: folder, signature });
        }
        let repository = Self { models };
        repository.check_unique()?;
        Ok(repository)
    }

    /// Two cards never share a name or an alias (aliases compared ignoring case, as
    /// clients write them).
    fn check_unique(&self) -> Result<(), CardError> {
        let mut seen: HashMap<String, &Model> = HashMap::new();
        for model in &self.models {
            let names = std::iter::once(&model.card.name).chain(&model.card.aliases);
            for (i, name) in names.enumerate() {
                let field = if i == 0 { "name".to_owned() } else { format!("aliases[{}]", i - 1) };
                if let Some(other) = seen.insert(name.to_ascii_lowercase(), model)
                    && !std::ptr::eq(other, model)
                {
                    return Err(CardError::new(
                        &model.dir.join(CARD_FILE),
                        Some(&field),
                        format!(
                            "`{name}` is already a name or alias of `{}` ({}); every name and alias names one model",
                            other.card.name,
                            other.dir.join(CARD_FILE).display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every model, in name order of their folders.
    pub fn models(&self) -> &[Model] {
        &self.models
    }

    /// The model called `name` (its own name, exactly, as routing keys are).
    pub fn get(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.card.name == name)
    }

    /// The model called `name` or with `name` among its aliases, ignoring case.
    pub fn find(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| {
            m.card.name.eq_ignore_ascii_case(name)
                || m.card.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
    }

    /// The repository narrowed to the models called `names` (those it has).
    pub fn only(&self, names: &[&str]) -> Self {
        Self {
            models: self.models.iter().filter(|m| names.contains(&m.card.name.as_str())).cloned().collect(),
        }
    }

    /// Checks every model's files as `how` says (a worker, for the models it serves).
    pub fn check_files(&self, how: FileCheck) -> Result<(), CardError> {
        for model in &self.models {
            let card = model.dir.join(CARD_FILE);
            files::check(&model.card, &model.dir, how)
                .map_err(|(field, rule)| CardError::new(&card, Some(&field), rule))?;
        }
        Ok(())
    }

    /// The models' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.card.name.as_str()).collect()
    }
}
