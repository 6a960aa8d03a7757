//! The `text-embedding` kind's input rules: `{"texts": [...]}`, as many non-empty texts
//! and as long as the card's limits allow.

use inferpush_repository::Limits;
use serde_json::Value;

use super::{InputError, invalid};

/// A result of this kind: per text, `dimensions` floats of at most about 12 characters of JSON.
pub fn result_bytes(input: &Value, dimensions: usize) -> u64 {
    let texts = input.get("texts").and_then(Value::as_array).map_or(1, Vec::len) as u64;
    texts * dimensions as u64 * 12 + super::RECORD_OVERHEAD_BYTES
}

/// The input for `texts`.
pub fn input_of(texts: Vec<String>) -> Value {
    serde_json::json!({ "texts": texts })
}

/// Checks an embedding input against `limits`.
pub fn validate(input: &Value, limits: &Limits) -> Result<(), InputError> {
    texts(input, limits).map(|_| ())
}

/// The `texts` of an embedding input, checked against `limits`.
pub fn texts<'a>(input: &'a Value, limits: &Limits) -> Result<Vec<&'a str>, InputError> {
    let (max_texts, max_chars) = (limits.max_texts, limits.max_chars);
    let object = input.as_object().ok_or_else(|| invalid("input", "must be a JSON object with `texts`"))?;
    if let Some(extra) = object.keys().find(|k| *k != "texts") {
        return Err(invalid(&format!("input.{extra}"), "is not a field of this model's input"));
    }
    let texts = object
        .get("texts")
        .ok_or_else(|| invalid("input.texts", format!("is required: an array of 1–{max_texts} strings")))?
        .as_array()
        .ok_or_else(|| invalid("input.texts", "must be an array of strings"))?;
    if texts.is_empty() || texts.len() > max_texts {
        return Err(invalid(
            "input.texts",
            format!("must hold 1 to {max_texts} strings, not {}", texts.len()),
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
            if chars > max_chars {
                return Err(invalid(&field, format!("is {chars} characters; the limit is {max_chars}")));
            }
            Ok(text)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits { max_texts: 256, max_chars: 10_000, ..Limits::default() }
    }

    #[test]
    fn takes_as_many_texts_as_the_card_allows() {
        assert_eq!(texts(&json!({"texts": ["a", "b"]}), &limits()).unwrap(), ["a", "b"]);
        assert!(validate(&json!({"texts": vec!["x"; 256]}), &limits()).is_ok());
        let narrow = Limits { max_texts: 2, ..limits() };
        assert!(validate(&json!({"texts": ["a", "b", "c"]}), &narrow).is_err());
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let long = "x".repeat(10_001);
        let cases = [
            (json!({}), "`input.texts`"),
            (json!({"texts": []}), "`input.texts`"),
            (json!({"texts": "one"}), "`input.texts`"),
            (json!({"texts": vec!["x"; 257]}), "`input.texts`"),
            (json!({"texts": ["ok", 3]}), "`input.texts[1]`"),
            (json!({"texts": ["ok", "  "]}), "`input.texts[1]`"),
            (json!({"texts": [long]}), "`input.texts[0]`"),
            (json!({"texts": ["ok"], "extra": 1}), "`input.extra`"),
            (json!(["x"]), "`input`"),
        ];
        for (input, field) in cases {
            let err = validate(&input, &limits()).unwrap_err().to_string();
            assert!(err.starts_with(field), "{input}: {err}");
        }
    }
}
