//! A task's deadline: `Cancel-After` (a header, or the `cancel_after` field), as
//! Replicate has it. A task not started by then is not run: it ends `expired`, its owner
//! hears `inference.failed` with code `expired`, and the broker drops its message (the
//! message carries the time left as its AMQP `expiration`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a task may wait: `30s`, `500ms`, `5m`, `1h30m`, or a bare number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(value_type = String, examples("30s", "2m", "1h30m", "45"))]
pub struct CancelAfter(Duration);

impl CancelAfter {
    /// The shortest accepted.
    pub const MIN: Duration = Duration::from_millis(100);
    /// The longest accepted.
    pub const MAX: Duration = Duration::from_secs(24 * 60 * 60);

    /// The duration.
    pub fn duration(self) -> Duration {
        self.0
    }

    /// The deadline, in Unix milliseconds, of a task accepted at `accepted_at_ms`.
    pub fn deadline_ms(self, accepted_at_ms: u64) -> u64 {
        accepted_at_ms.saturating_add(self.0.as_millis() as u64)
    }
}

impl std::str::FromStr for CancelAfter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let unreadable = || {
            format!(
                "`{text}` is not a duration: write e.g. `30s`, `500ms`, `5m`, `1h30m`, or a number of seconds"
            )
        };
        let duration = if let Ok(seconds) = text.parse::<u64>() {
            Duration::from_secs(seconds)
        } else {
            let mut total = Duration::ZERO;
            let mut rest = text;
            while !rest.is_empty() {
                let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(unreadable)?;
                let number: u64 = rest[..digits].parse().map_err(|_| unreadable())?;
                rest = &rest[digits..];
                let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
                let unit = match &rest[..unit_len] {
                    "ms" => Duration::from_millis(1),
                    "s" => Duration::from_secs(1),
                    "m" => Duration::from_secs(60),
                    "h" => Duration::from_secs(3600),
                    _ => return Err(unreadable()),
                };
                total = total.saturating_add(unit.saturating_mul(number.min(u32::MAX as u64) as u32));
                rest = &rest[unit_len..];
            }
            total
        };
        if !(Self::MIN..=Self::MAX).contains(&duration) {
            return Err(format!(
                "`{text}` is out of range: a task may wait from {} ms to {} hours",
                Self::MIN.as_millis(),
                Self::MAX.as_secs() / 3600
            ));
        }
        Ok(Self(duration))
    }
}

impl Serialize for CancelAfter {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

impl<'de> Deserialize<'de> for CancelAfter {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => text.parse().map_err(serde::de::Error::custom),
            serde_json::Value::Number(n) if n.is_u64() => {
                n.to_string().parse().map_err(serde::de::Error::custom)
            }
            other => Err(serde::de::Error::custom(format!(
                "`cancel_after` must be a duration such as \"30s\" or a number of seconds, not {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Duration, String> {
        text.parse::<CancelAfter>().map(CancelAfter::duration)
    }

    #[test]
    fn reads_durations_as_replicate_writes_them() {
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(" 2m10s "), Ok(Duration::from_secs(130)));
    }

    #[test]
    fn refuses_what_it_cannot_read_or_what_is_out_of_range() {
        for bad in ["", "soon", "10 s", "5d", "s", "-1", "1.5s", "0", "50ms", "25h"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_field_may_be_a_string_or_seconds_and_round_trips() {
        let from_number: CancelAfter = serde_json::from_str("45").unwrap();
        assert_eq!(from_number.duration(), Duration::from_secs(45));
        let from_text: CancelAfter = serde_json::from_str("\"1m\"").unwrap();
        let again: CancelAfter = serde_json::from_value(serde_json::to_value(from_text).unwrap()).unwrap();
        assert_eq!(again, from_text);
        assert!(serde_json::from_str::<CancelAfter>("true").is_err());
        assert_eq!(from_text.deadline_ms(1_000), 61_000);
    }
}
