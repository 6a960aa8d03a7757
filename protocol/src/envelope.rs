//! The task envelope: what the api publishes to RabbitMQ and the worker consumes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::channel::InferenceChannel;
use crate::delivery::Delivery;

/// A task's id: a UUIDv7, so ids sort by submission time.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid, example = "01936f4e-7c5a-7b1e-9a4f-3c2d1e0f5a6b")]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// A fresh, time-ordered id.
    pub fn new_v7() -> Self {
        Self(Uuid::now_v7())
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl std::str::FromStr for TaskId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// The body of a task message (persistent JSON, `message_id` = task id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEnvelope {
    /// Unique id, also the AMQP `message_id`.
    pub task_id: TaskId,
    /// Who submitted it; results go only to this user's channel.
    pub user_id: String,
    /// Catalogue name of the model, also the routing key.
    pub model: String,
    /// Model input, already validated by the api.
    pub input: serde_json::Value,
    /// The channel the result events are pushed to (a message naming anything else does
    /// not decode).
    pub channel: InferenceChannel,
    /// Milliseconds since the Unix epoch when the api accepted it.
    pub submitted_at_ms: u64,
    /// Where its events go, when its owner chose (absent: every sink of the deployment).
    #[serde(default, skip_serializing_if = "Delivery::is_default")]
    pub delivery: Delivery,
    /// Not run if not started by then (Unix milliseconds; see [`crate::deadline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// What it counts for against its user's in-flight cap and fair share: 1, or for a
    /// generation one per [`TOKENS_PER_SLOT`] tokens it may write.
    #[serde(default = "one_slot", skip_serializing_if = "is_one_slot")]
    pub slots: u64,
}

/// Tokens a generation may write per in-flight slot it takes: a 512-token answer counts as
/// 8 tasks, since it holds a worker about that much longer than a short one.
pub const TOKENS_PER_SLOT: u64 = 64;

pub(crate) fn one_slot() -> u64 {
    1
}

/// serde passes a reference.
pub(crate) fn is_one_slot(slots: &u64) -> bool {
    *slots == 1
}

impl TaskEnvelope {
    /// A new task (fresh id) of `user_id` for `model`, accepted at `submitted_at_ms`, whose
    /// events go to `channel`.
    pub fn new(
        user_id: impl Into<String>,
        model: impl Into<String>,
        input: serde_json::Value,
        channel: InferenceChannel,
        submitted_at_ms: u64,
    ) -> Self {
        Self {
            task_id: TaskId::new_v7(),
            user_id: user_id.into(),
            model: model.into(),
            input,
            channel,
            submitted_at_ms,
            delivery: Delivery::default(),
            deadline_ms: None,
            slots: 1,
        }
    }

    /// The same task with its owner's choice of where its events go.
    pub fn with_delivery(self, delivery: Delivery) -> Self {
        Self { delivery, ..self }
    }

    /// The same task with a deadline (Unix milliseconds).
    pub fn with_deadline(self, deadline_ms: Option<u64>) -> Self {
        Self { deadline_ms, ..self }
    }

    /// The same task counting `slots` (at least 1) in-flight slots.
    pub fn with_slots(self, slots: u64) -> Self {
        Self { slots: slots.max(1), ..self }
    }

    /// True once its deadline has passed at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.deadline_ms.is_some_and(|deadline| now_ms >= deadline)
    }

    /// Serialises the envelope as the message body.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a TaskEnvelope always serialises")
    }

    /// Reads a message body.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_v7_and_sort_by_creation() {
        let a = TaskId::new_v7();
        let b = TaskId::new_v7();
        assert_eq!(a.0.get_version_num(), 7);
        assert!(a < b);
        assert_eq!(a.to_string().parse::<TaskId>().unwrap(), a);
    }

    #[test]
    fn envelope_round_trips_through_bytes() {
        let envelope = TaskEnvelope::new(
            "alice",
            "echo",
            serde_json::json!({"text": "hi", "delay_ms": 5}),
            InferenceChannel::private("alice").unwrap(),
            1_700_000_000_000,
        );
        assert_eq!(TaskEnvelope::from_bytes(&envelope.to_bytes()).unwrap(), envelope);
    }

    #[test]
    fn envelope_rejects_missing_fields() {
        assert!(TaskEnvelope::from_bytes(br#"{"task_id":"not-a-uuid"}"#).is_err());
        assert!(TaskEnvelope::from_bytes(b"not json").is_err());
        let alices = TaskEnvelope::new(
            "alice",
            "echo",
            serde_json::json!({}),
            InferenceChannel::private("alice").unwrap(),
            1,
        );
        let mut json = serde_json::to_value(alices).unwrap();
        json["channel"] = "public-channel".into();
        assert!(
            TaskEnvelope::from_bytes(json.to_string().as_bytes()).is_err(),
            "a foreign channel does not decode"
        );
    }
}
