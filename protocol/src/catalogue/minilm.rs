//! `all-minilm-l6-v2`'s input rules: 1–256 non-empty texts of at most 10000 characters.

use serde_json::Value;

use super::{InputError, invalid};

/// Catalogue name of the sentence-embedding model.
pub const NAME: &str = "all-minilm-l6-v2";
/// Most texts in one embedding task (a worker runs them in as many passes as they need).
pub const MAX_TEXTS: usize = 256;
/// Longest text, in characters (tokens past 256 are truncated, as the original model does).
pub const MAX_CHARS: usize = 10_000;
/// Other names it answers to on `/v1/embeddings`: its Hugging Face id.
pub const ALIASES: &[&str] = &["sentence-transformers/all-MiniLM-L6-v2"];
/// Size of each embedding.
pub const DIMENSIONS: usize = 384;

/// The largest embedding input, as compact JSON (100 texts of 10 000 characters fit).
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// An embedding result: per text, 384 floats of at most about 12 characters of JSON.
pub fn result_bytes(input: &Value) -> u64 {
    let texts = input.get("texts").and_then(Value::as_array).map_or(1, Vec::len) as u64;
    texts * DIMENSIONS as u64 * 12 + super::RECORD_OVERHEAD_BYTES
}

/// The input for `texts`.
pub fn input_of(texts: Vec<String>) -> Value {
    serde_json::json!({ "texts": texts })
}

/// Checks an embedding input.
pub fn validate(input: &Value) -> Result<(), InputError> {
    texts(input).map(|_| ())
}

/// The `texts` of an embedding input, checked.
pub fn texts(input: &Value) -> Result<Vec<&str>, InputError> {
    let object = input.as_object().ok_or_else(|| invalid("input", "must be a JSON object with `texts`"))?;
    if let Some(extra) = object.keys().find(|k| *k != "texts") {
        return Err(invalid(&format!("input.{extra}"), "is not a field of this model's input"));
    }
    let texts = object
        .get("texts")
        .ok_or_else(|| invalid("input.texts", format!("is required: an array of 1–{MAX_TEXTS} strings")))?
        .as_array()
        .ok_or_else(|| invalid("input.texts", "must be an array of strings"))?;
    if texts.is_empty() || texts.len() > MAX_TEXTS {
        return Err(invalid(
            "input.texts",
            format!("must hold 1 to {MAX_TEXTS} strings, not {}", texts.len()),
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
            if chars > MAX_CHARS {
                return Err(invalid(&field, format!("is {chars} characters; the limit is {MAX_CHARS}")));
            }
            Ok(text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn takes_one_to_256_texts() {
        assert_eq!(texts(&json!({"texts": ["a", "b"]})).unwrap(), ["a", "b"]);
        assert!(validate(&json!({"texts": vec!["x"; MAX_TEXTS]})).is_ok());
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let long = "x".repeat(MAX_CHARS + 1);
        let cases = [
            (json!({}), "`input.texts`"),
            (json!({"texts": []}), "`input.texts`"),
            (json!({"texts": "one"}), "`input.texts`"),
            (json!({"texts": vec!["x"; MAX_TEXTS + 1]}), "`input.texts`"),
            (json!({"texts": ["ok", 3]}), "`input.texts[1]`"),
            (json!({"texts": ["ok", "  "]}), "`input.texts[1]`"),
            (json!({"texts": [long]}), "`input.texts[0]`"),
            (json!({"texts": ["ok"], "extra": 1}), "`input.extra`"),
            (json!(["x"]), "`input`"),
        ];
        for (input, field) in cases {
            let err = validate(&input).unwrap_err().to_string();
            assert!(err.starts_with(field), "{input}: {err}");
        }
    }
}
