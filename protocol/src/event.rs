//! Result events pushed to a user's channel, and the Pusher `batch_events` body.

use serde::{Deserialize, Serialize};

use crate::envelope::TaskId;

/// Names of the events on an inference channel.
pub struct EventName;

impl EventName {
    /// A task finished and `output` (or `result_url`) holds its result.
    pub const COMPLETED: &'static str = "inference.completed";
    /// A task ended without a result; `error` says why.
    pub const FAILED: &'static str = "inference.failed";
    /// A worker took the task and started running it.
    pub const STARTED: &'static str = "inference.started";
}

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Accepted and confirmed by the broker, not yet taken by a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// Finished with an output.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled by its owner before it started.
    Cancelled,
}

/// Machine-readable reason and human message for a failed task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable code clients can switch on, e.g. `invalid_input`, `model_error`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// How long each stage took, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// From acceptance by the api until a worker started the task.
    pub queued_ms: u64,
    /// Time in the model.
    pub inference_ms: u64,
    /// From acceptance until the result was ready to push.
    pub total_ms: u64,
}

/// The data of an `inference.*` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InferenceEvent {
    /// The task this result belongs to.
    pub task_id: TaskId,
    /// The model that ran it.
    pub model: String,
    /// Final (or current, for `started`) state.
    pub status: TaskStatus,
    /// The model's output, when it fits in one event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Why the task failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// Where to fetch an output too large to push inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_url: Option<String>,
    /// Stage durations.
    pub timings: Timings,
}

impl InferenceEvent {
    /// The Pusher event name that carries this data.
    pub fn event_name(&self) -> &'static str {
        match self.status {
            TaskStatus::Succeeded => EventName::COMPLETED,
            TaskStatus::Running | TaskStatus::Queued => EventName::STARTED,
            TaskStatus::Failed | TaskStatus::Cancelled => EventName::FAILED,
        }
    }
}

/// One event of a `POST /apps/{id}/batch_events` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEvent {
    /// The single channel this event goes to.
    pub channel: String,
    /// Event name, e.g. `inference.completed`.
    pub name: String,
    /// The event data as a JSON string (Pusher sends data as text).
    pub data: String,
}

/// The body of a `batch_events` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchEvents {
    /// Up to Soketi's limit of events per call (10 by default).
    pub batch: Vec<BatchEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: TaskStatus) -> InferenceEvent {
        InferenceEvent {
            task_id: TaskId::new_v7(),
            model: "echo".into(),
            status,
            output: None,
            error: None,
            result_url: None,
            timings: Timings::default(),
        }
    }

    #[test]
    fn event_name_follows_status() {
        assert_eq!(event(TaskStatus::Succeeded).event_name(), "inference.completed");
        assert_eq!(event(TaskStatus::Failed).event_name(), "inference.failed");
        assert_eq!(event(TaskStatus::Cancelled).event_name(), "inference.failed");
        assert_eq!(event(TaskStatus::Running).event_name(), "inference.started");
    }

    #[test]
    fn absent_fields_are_left_out_of_the_json() {
        let mut completed = event(TaskStatus::Succeeded);
        completed.output = Some(serde_json::json!({"a": 1}));
        let json = serde_json::to_value(&completed).unwrap();
        assert_eq!(json["status"], "succeeded");
        assert_eq!(json["output"]["a"], 1);
        assert!(json.get("error").is_none());
        assert!(json.get("result_url").is_none());
        assert_eq!(json["timings"]["total_ms"], 0);
    }
}
