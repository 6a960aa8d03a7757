//! The `echo` kind's input rules: any JSON object, with an optional `delay_ms` of at most
//! a minute. (Its size is bounded by the card's `limits.max_input_bytes`: the input is
//! stored and sent back whole.)

use serde_json::Value;

use super::{InputError, invalid};

/// Longest `delay_ms` the echo model accepts: one minute.
pub const MAX_DELAY_MS: u64 = 60_000;

/// The echo model stores its input as its output.
pub fn result_bytes(input: &Value) -> u64 {
    super::json_bytes(input) as u64 + super::RECORD_OVERHEAD_BYTES
}

/// Checks an echo input.
pub fn validate(input: &Value) -> Result<(), InputError> {
    let object = input.as_object().ok_or_else(|| invalid("input", "must be a JSON object"))?;
    if let Some(delay) = object.get("delay_ms") {
        let in_range = delay.as_u64().filter(|ms| *ms <= MAX_DELAY_MS);
        if in_range.is_none() {
            return Err(invalid("input.delay_ms", format!("must be an integer from 0 to {MAX_DELAY_MS}")));
        }
    }
    Ok(())
}

/// The echo model's delay for an input the catalogue accepted (0 when absent).
pub fn delay_ms(input: &Value) -> u64 {
    input.get("delay_ms").and_then(Value::as_u64).unwrap_or(0).min(MAX_DELAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_objects_with_or_without_delay() {
        assert_eq!(validate(&json!({})), Ok(()));
        assert_eq!(validate(&json!({"text": "hi", "delay_ms": 0})), Ok(()));
        assert_eq!(validate(&json!({"delay_ms": 60000})), Ok(()));
    }

    #[test]
    fn refuses_bad_delays_naming_the_field() {
        for delay in [json!(-1), json!(60001), json!(1.5), json!("10"), json!(null), json!(1e30)] {
            let err = validate(&json!({ "delay_ms": delay })).unwrap_err();
            assert!(err.to_string().starts_with("`input.delay_ms`"), "{err}");
        }
    }

    #[test]
    fn refuses_non_objects() {
        for input in [json!([]), json!("text"), json!(3), json!(null)] {
            assert!(matches!(validate(&input), Err(InputError::Invalid { .. })));
        }
    }

    #[test]
    fn delay_defaults_to_zero() {
        assert_eq!(delay_ms(&json!({})), 0);
        assert_eq!(delay_ms(&json!({"delay_ms": 25})), 25);
    }
}
