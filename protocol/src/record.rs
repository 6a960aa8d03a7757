//! A task's stored state: what `GET /v1/inference/{id}` answers and what the worker
//! moves forward. Status only ever advances: queued → running → a final state.

use serde::{Deserialize, Serialize};

use crate::envelope::{TaskEnvelope, TaskId};
use crate::event::{ErrorBody, InferenceEvent, TaskStatus, Timings};

/// Everything known about one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub channel: String,
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
}

impl TaskStatus {
    /// True for succeeded, failed and cancelled: nothing moves a task out of these.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled)
    }
}

impl TaskRecord {
    /// The `queued` record of a task the api just accepted.
    pub fn queued(task: &TaskEnvelope) -> Self {
        Self {
            task_id: task.task_id,
            user_id: task.user_id.clone(),
            model: task.model.clone(),
            status: TaskStatus::Queued,
            channel: task.channel.clone(),
            submitted_at_ms: task.submitted_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            output: None,
            error: None,
            timings: None,
        }
    }

    /// The event that announces this record's final state, output inline.
    pub fn event(&self) -> InferenceEvent {
        InferenceEvent {
            task_id: self.task_id,
            model: self.model.clone(),
            status: self.status,
            output: self.output.clone(),
            error: self.error.clone(),
            result_url: None,
            timings: self.timings.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> TaskEnvelope {
        TaskEnvelope {
            task_id: TaskId::new_v7(),
            user_id: "alice".into(),
            model: "echo".into(),
            input: serde_json::json!({}),
            channel: "private-inference.alice".into(),
            submitted_at_ms: 7,
        }
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
    }

    #[test]
    fn only_terminal_states_are_final() {
        assert!(!TaskStatus::Queued.is_final());
        assert!(!TaskStatus::Running.is_final());
        assert!(TaskStatus::Succeeded.is_final());
        assert!(TaskStatus::Failed.is_final());
        assert!(TaskStatus::Cancelled.is_final());
    }

    #[test]
    fn event_of_a_cancelled_record_is_a_failed_event() {
        let mut record = TaskRecord::queued(&envelope());
        record.status = TaskStatus::Cancelled;
        assert_eq!(record.event().event_name(), "inference.failed");
    }
}
