//! Result events pushed to a user's channel, and the Pusher `batch_events` body.

use serde::{Deserialize, Serialize};

use crate::envelope::TaskId;
use crate::lifecycle::TaskStatus;

/// Machine-readable reason and human message for a failed task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable code clients can switch on, e.g. `invalid_input`, `model_error`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

/// How long each stage took, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Timings {
    /// From acceptance by the api until a worker started the task.
    pub queued_ms: u64,
    /// Time in the model.
    pub inference_ms: u64,
    /// From acceptance until the result was ready to push.
    pub total_ms: u64,
}

/// The data of an `inference.*` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// The version of the model's card that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// The SHA-256 of the weights that ran it (none for a model without weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_sha256: Option<String>,
}

impl InferenceEvent {
    /// The Pusher event name that carries this data (none for `queued`, which is never
    /// pushed): the lifecycle decides.
    pub fn event_name(&self) -> Option<&'static str> {
        self.status.event_name()
    }
}

/// The data of an `inference.delta` event: more of a running generation's text.
///
/// `seq` counts a task's deltas from 1 within one `attempt` (the start time, Unix ms, of
/// the worker's run that wrote them): a task redelivered after its worker died starts
/// again with a new `attempt` and `seq` 1, and a client drops what it showed of an earlier
/// attempt. `inference.completed` carries the whole text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeltaEvent {
    /// The task.
    pub task_id: TaskId,
    /// Which run of the task wrote it.
    pub attempt: u64,
    /// Its place among the attempt's deltas, from 1, one by one.
    pub seq: u64,
    /// The new text.
    pub delta: String,
    /// Tokens generated so far in this attempt.
    pub tokens: usize,
    /// When the oldest text of this delta was generated (Unix ms): a client's arrival time
    /// minus it is the longest any of its text took to reach it.
    #[serde(default)]
    pub generated_at_ms: u64,
}

/// What a running generation has written so far (`progress` of `GET /v1/inference/{id}`):
/// the text of deltas 1 to `seq` of `attempt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskProgress {
    /// Which run of the task wrote it.
    pub attempt: u64,
    /// The last delta it includes.
    pub seq: u64,
    /// The text so far.
    pub text: String,
    /// Tokens generated so far.
    pub tokens: usize,
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
            model_version: None,
            weights_sha256: None,
        }
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
