//! A task's stored state: what `GET /v1/inference/{id}` answers and what the worker
//! moves forward. The transitions that make each state are in [`crate::lifecycle`].

use serde::{Deserialize, Serialize};

use crate::channel::InferenceChannel;
use crate::delivery::Delivery;
use crate::envelope::TaskId;
use crate::event::{ErrorBody, InferenceEvent, Timings};
use crate::lifecycle::TaskStatus;

/// Everything known about one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskRecord {
    /// The task's id.
    pub task_id: TaskId,
    /// Its owner; only they may read or cancel it.
    pub user_id: String,
    /// The model it runs on.
    pub model: String,
    /// Where it stands.
    pub status: TaskStatus,
    /// The channel its events go to.
    pub channel: InferenceChannel,
    /// When the api accepted it (ms since the Unix epoch).
    pub submitted_at_ms: u64,
    /// When a worker last started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// When it reached its final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    /// The model's output, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// Stage durations, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    /// Where its events go, when its owner chose.
    #[serde(default, skip_serializing_if = "Delivery::is_default")]
    pub delivery: Delivery,
    /// Not run if not started by then (Unix milliseconds), when its owner set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The version of the model's card that ran it (set when a worker starts it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// The SHA-256 of the weights file that ran it (none for a model without weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
    /// While a generation runs: the text it has written so far (filled in by the api from
    /// the progress store; never stored in the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::event::TaskProgress>,
    /// In-flight slots it takes while unfinished (1, or more for a long generation).
    #[serde(default = "crate::envelope::one_slot", skip_serializing_if = "crate::envelope::is_one_slot")]
    pub slots: u64,
}

/// What produced a result: the card's version and the weights the engine loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The card's `version`.
    pub version: String,
    /// The SHA-256 of the weights file the engine loaded, as the card lists it.
    pub weights_sha256: Option<String>,
}

impl TaskRecord {
    /// The record, naming what runs it.
    pub fn produced_by(mut self, provenance: &Provenance) -> Self {
        self.model_version = Some(provenance.version.clone());
        self.weights_sha256.clone_from(&provenance.weights_sha256);
        self
    }

    /// The event that announces this record's state, output inline.
    pub fn event(&self) -> InferenceEvent {
        InferenceEvent {
            task_id: self.task_id,
            model: self.model.clone(),
            status: self.status,
            output: self.output.clone(),
            error: self.error.clone(),
            result_url: None,
            timings: self.timings.unwrap_or_default(),
            model_version: self.model_version.clone(),
            weights_sha256: self.weights_sha256.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::TaskEnvelope;

    fn envelope() -> TaskEnvelope {
        TaskEnvelope::new(
            "alice",
            "echo",
            serde_json::json!({}),
            InferenceChannel::private("alice").unwrap(),
            7,
        )
    }

    #[test]
    fn queued_record_copies_the_envelope() {
        let task = envelope();
        let record = TaskRecord::queued(&task);
        assert_eq!(record.status, TaskStatus::Queued);
        assert_eq!(record.user_id, "alice");
        assert_eq!(record.submitted_at_ms, 7);
        let json = serde_json::to_value(&record).unwrap();
        assert!(json.get("output").is_none(), "{json}");
        assert_eq!(json["channel"], "private-inference.alice");
    }

    #[test]
    fn event_of_a_cancelled_record_is_a_failed_event() {
        let mut record = TaskRecord::queued(&envelope());
        record.status = TaskStatus::Cancelled;
        assert_eq!(record.event().event_name(), Some("inference.failed"));
    }
}
