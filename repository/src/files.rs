//! Checking a card's files on disk.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::card::Card;

/// How far a card's files are checked when the repository is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    /// Not at all (the api, which never reads weights).
    None,
    /// Each exists.
    Exists,
    /// Each exists and its SHA-256 is the card's (a worker, for the models it serves).
    Checksums,
}

/// Checks `card`'s files in `dir`; the field at fault and the rule on failure.
pub(crate) fn check(card: &Card, dir: &Path, how: FileCheck) -> Result<(), (String, String)> {
    if how == FileCheck::None {
        return Ok(());
    }
    for (i, file) in card.files.iter().enumerate() {
        let path = dir.join(&file.path);
        let field = format!("files[{i}]");
        if !path.is_file() {
            return Err((field, format!("`{}` is missing ({})", file.path, path.display())));
        }
        if how == FileCheck::Checksums {
            let actual = sha256_file(&path)
                .map_err(|e| (field.clone(), format!("cannot read `{}`: {e}", file.path)))?;
            if !actual.eq_ignore_ascii_case(&file.sha256) {
                return Err((
                    format!("{field}.sha256"),
                    format!("`{}` has SHA-256 {actual}, not the card's {}", file.path, file.sha256),
                ));
            }
        }
    }
    Ok(())
}

/// The hex SHA-256 of a file's bytes.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
