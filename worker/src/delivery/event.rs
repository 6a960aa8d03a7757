//! The event that announces a record, as every sink sends it: the record's state and
//! output, with an output too large for one event replaced by its `result_url`.

use inferpush_protocol::encryption::{MasterKey, random_nonce};
use inferpush_protocol::lifecycle::status_url;
use inferpush_protocol::{InferenceEvent, TaskRecord};

/// An event's data as pushed: JSON, sealed when the channel is encrypted.
pub fn render(event: &impl serde::Serialize, channel: &str, seal: Option<&MasterKey>) -> String {
    let json = serde_json::to_string(event).expect("events always serialise");
    match seal {
        Some(key) => key.seal(channel, random_nonce(), &json),
        None => json,
    }
}

/// The event announcing `record` and its data as pushed (sealed for an encrypted
/// channel); an output too large for one event is replaced by a `result_url`.
pub fn result_event(
    record: &TaskRecord,
    max_event_bytes: usize,
    result_base_url: &str,
    seal: Option<&MasterKey>,
) -> (InferenceEvent, String) {
    let channel = record.channel.to_string();
    let mut event = record.event();
    let mut data = render(&event, &channel, seal);
    // Measured as pushed: sealing grows the data by about a third.
    if data.len() > max_event_bytes {
        event.output = None;
        event.result_url = Some(status_url(result_base_url, record.task_id));
        data = render(&event, &channel, seal);
    }
    (event, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferpush_protocol::{ErrorBody, InferenceChannel, TaskEnvelope, TaskStatus};
    use serde_json::json;

    fn record(output: serde_json::Value) -> TaskRecord {
        let mut record = TaskRecord::queued(&TaskEnvelope::new(
            "alice",
            "echo",
            json!({}),
            InferenceChannel::private("alice").unwrap(),
            0,
        ));
        record.status = TaskStatus::Succeeded;
        record.output = Some(output);
        record
    }

    #[test]
    fn small_results_travel_inline() {
        let (event, _) = result_event(&record(json!({"text": "hi"})), 1000, "", None);
        assert_eq!(event.output, Some(json!({"text": "hi"})));
        assert!(event.result_url.is_none());
        assert_eq!(event.event_name(), Some("inference.completed"));
    }

    #[test]
    fn oversized_results_become_a_result_url() {
        let big = record(json!({"text": "x".repeat(2000)}));
        let (event, _) = result_event(&big, 1000, "https://api.example", None);
        assert_eq!(event.status, TaskStatus::Succeeded);
        assert!(event.output.is_none());
        assert_eq!(event.result_url.unwrap(), format!("https://api.example/v1/inference/{}", big.task_id));
    }

    #[test]
    fn failures_keep_their_code() {
        let mut failed = record(json!(null));
        failed.status = TaskStatus::Failed;
        failed.output = None;
        failed.error = Some(ErrorBody { code: "invalid_input".into(), message: "bad".into() });
        let (event, _) = result_event(&failed, 1000, "", None);
        assert_eq!(event.event_name(), Some("inference.failed"));
        assert_eq!(event.error.unwrap().code, "invalid_input");
    }

    #[test]
    fn the_event_limit_counts_the_sealed_size() {
        use base64::Engine;
        let key =
            MasterKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([5u8; 32])).unwrap();
        let mut result = record(json!({"text": "x".repeat(700)}));
        result.channel = InferenceChannel::parse("private-encrypted-inference.alice").unwrap();
        let (plain, _) = result_event(&result, 1000, "", None);
        assert!(plain.output.is_some(), "fits in clear");
        let (sealed, data) = result_event(&result, 1000, "", Some(&key));
        assert!(sealed.output.is_none() && sealed.result_url.is_some(), "does not fit once sealed");
        assert!(data.len() <= 1000 && !data.contains("xxx"));
    }
}
