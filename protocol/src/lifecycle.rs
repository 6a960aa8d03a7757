//! The task lifecycle, defined once: the states, which state may follow which, which are
//! final, the event each state announces, the status URL, and the record each transition
//! makes (stamped by a [`Clock`] the caller passes in).
//!
//! ```text
//! (none) ──create──▶ queued ──start──▶ running ──succeed──▶ succeeded
//!                      │  ▲              │ ▲ └──fail────────▶ failed
//!                      │  └─(redelivery)─┘ └─ start again     ▲
//!                      ├──cancel──────────────────────────▶ cancelled (also from running:
//!                      │                                     a generation stopped by its owner)
//!                      └──dead-letter (delivery limit), from queued or running ─┘
//! ```
//!
//! Status only moves forward: nothing leaves a final state. The Redis scripts that apply
//! transitions are generated from [`TaskStatus::may_follow`], and the demo page's copy of
//! the final states and event names is checked against this module by a test.

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::envelope::{TaskEnvelope, TaskId};
use crate::event::{ErrorBody, Timings};
use crate::record::TaskRecord;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    /// Accepted and confirmed by the broker, not yet taken by a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// Finished with an output.
    Succeeded,
    /// Finished with an error (including a task dead-lettered after too many deliveries).
    Failed,
    /// Cancelled by its owner before it started, or stopped while it ran (a generation,
    /// which keeps the text written so far).
    Cancelled,
    /// Its deadline passed before it ran; it was not run.
    Expired,
}

impl TaskStatus {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskStatus; 6] = [
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Expired,
    ];

    /// The state's name on the wire and in the store.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Expired => "expired",
        }
    }

    /// True for succeeded, failed, cancelled and expired: nothing moves a task out of these.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::Expired
        )
    }

    /// True when a task whose stored state is `current` (`None`: no record) may move to
    /// `self`:
    /// - `queued` only as a new task;
    /// - `running` from nothing, queued, or running (a redelivery after a crash);
    /// - `cancelled` from queued (its owner cancelled it) or running (a worker stopped a
    ///   generation its owner cancelled);
    /// - `expired` from nothing, queued, or running (a worker found its deadline passed
    ///   before running it);
    /// - `succeeded` or `failed` from anything not yet final (a record lost to expiry is
    ///   written again, so the owner can still read the result).
    pub fn may_follow(self, current: Option<TaskStatus>) -> bool {
        use TaskStatus::*;
        match self {
            Queued => current.is_none(),
            Running => matches!(current, None | Some(Queued) | Some(Running)),
            Cancelled => matches!(current, Some(Queued) | Some(Running)),
            Expired => matches!(current, None | Some(Queued) | Some(Running)),
            Succeeded | Failed => !current.is_some_and(TaskStatus::is_final),
        }
    }

    /// The event that announces this state on the owner's channel; `queued` has none
    /// (the 202 answer announces it).
    pub const fn event_name(self) -> Option<&'static str> {
        match self {
            TaskStatus::Queued => None,
            TaskStatus::Running => Some(EventName::STARTED),
            TaskStatus::Succeeded => Some(EventName::COMPLETED),
            TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::Expired => Some(EventName::FAILED),
        }
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names of the events on an inference channel.
pub struct EventName;

impl EventName {
    /// A task finished and `output` (or `result_url`) holds its result.
    pub const COMPLETED: &'static str = "inference.completed";
    /// A task ended without a result; `error` says why.
    pub const FAILED: &'static str = "inference.failed";
    /// A worker took the task and started running it.
    pub const STARTED: &'static str = "inference.started";
    /// A running generation wrote more text (`seq` counts these from 1 per attempt).
    pub const DELTA: &'static str = "inference.delta";

    /// True for the events that end a task's stream (`completed`, `failed`).
    pub fn is_final(name: &str) -> bool {
        name == Self::COMPLETED || name == Self::FAILED
    }
}

/// Stable `error.code` values the lifecycle itself sets (models add their own).
pub struct ErrorCode;

impl ErrorCode {
    /// The owner cancelled the task before it started.
    pub const CANCELLED: &'static str = "cancelled";
    /// The task was delivered too many times without finishing and was dead-lettered.
    pub const DELIVERY_LIMIT: &'static str = "delivery_limit";
    /// The broker never confirmed that it holds the task, however long the api retried.
    pub const NOT_QUEUED: &'static str = "not_queued";
    /// Its deadline passed before it ran.
    pub const EXPIRED: &'static str = "expired";
}

/// The collection of a user's tasks: submit with POST, list with GET.
pub const TASKS_PATH: &str = "/v1/inference";
/// The route of one task (axum's syntax): read with GET, cancel with DELETE.
pub const TASK_ROUTE: &str = "/v1/inference/{task_id}";

/// Where a task's state is read: `/v1/inference/{task_id}` under the api's public base URL
/// (empty for a relative URL).
pub fn status_url(base_url: &str, task_id: TaskId) -> String {
    format!("{}{TASKS_PATH}/{task_id}", base_url.trim_end_matches('/'))
}

impl TaskRecord {
    /// The record of a task the api just accepted.
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
            delivery: task.delivery.clone(),
            deadline_ms: task.deadline_ms,
            model_version: None,
            weights_sha256: None,
            progress: None,
            slots: task.slots,
        }
    }

    /// A worker took the task now: `running`, with the time it waited in the queue.
    pub fn started(&self, clock: &dyn Clock) -> Self {
        let now = clock.now_ms();
        let queued_ms = now.saturating_sub(self.submitted_at_ms);
        Self {
            status: TaskStatus::Running,
            started_at_ms: Some(now),
            timings: Some(Timings { queued_ms, inference_ms: 0, total_ms: queued_ms }),
            ..self.clone()
        }
    }

    /// The model answered `output` after `inference_ms`.
    pub fn succeeded(&self, output: serde_json::Value, inference_ms: u64, clock: &dyn Clock) -> Self {
        let mut record = self.finished(TaskStatus::Succeeded, clock);
        record.timings = Some(self.run_timings(inference_ms));
        record.output = Some(output);
        record
    }

    /// The model failed with `error` after `inference_ms`.
    pub fn failed(&self, error: ErrorBody, inference_ms: u64, clock: &dyn Clock) -> Self {
        let mut record = self.finished(TaskStatus::Failed, clock);
        record.timings = Some(self.run_timings(inference_ms));
        record.error = Some(error);
        record
    }

    /// The owner cancelled it (allowed only while queued: see [`TaskStatus::may_follow`]).
    pub fn cancelled(&self, clock: &dyn Clock) -> Self {
        self.ended(
            TaskStatus::Cancelled,
            ErrorCode::CANCELLED,
            "the task was cancelled by its owner before it started",
            clock,
        )
    }

    /// A running generation its owner cancelled, stopped with `output` (the text so far)
    /// after `inference_ms`.
    pub fn stopped(&self, output: serde_json::Value, inference_ms: u64, clock: &dyn Clock) -> Self {
        let mut record = self.ended(
            TaskStatus::Cancelled,
            ErrorCode::CANCELLED,
            "the task was cancelled by its owner while it ran; `output` holds what it wrote until then",
            clock,
        );
        record.timings = Some(self.run_timings(inference_ms));
        record.output = Some(output);
        record
    }

    /// Its deadline passed before it ran: it is not run.
    pub fn expired(&self, clock: &dyn Clock) -> Self {
        let message = "the task's deadline (Cancel-After) passed before it could run; it was not run";
        self.ended(TaskStatus::Expired, ErrorCode::EXPIRED, message, clock)
    }

    /// The broker gave up on it after its delivery limit: it fails for good.
    pub fn dead_lettered(&self, clock: &dyn Clock) -> Self {
        let message = "the task was delivered to workers too many times without finishing \
                       (each attempt crashed or was stopped); it has been set aside";
        self.ended(TaskStatus::Failed, ErrorCode::DELIVERY_LIMIT, message, clock)
    }

    /// The api gave up on a task whose publish was never confirmed: no worker ever took it.
    pub fn not_queued(&self, clock: &dyn Clock) -> Self {
        let message = "the message broker never confirmed that it holds this task, though the api \
                       kept trying; it was not run, submit it again";
        self.ended(TaskStatus::Failed, ErrorCode::NOT_QUEUED, message, clock)
    }

    /// Final in `status` without a run, for the reason `code` and `message` give.
    fn ended(&self, status: TaskStatus, code: &str, message: &str, clock: &dyn Clock) -> Self {
        let mut record = self.finished(status, clock);
        record.error = Some(ErrorBody { code: code.into(), message: message.into() });
        record
    }

    fn finished(&self, status: TaskStatus, clock: &dyn Clock) -> Self {
        debug_assert!(status.is_final());
        Self { status, finished_at_ms: Some(clock.now_ms()), output: None, error: None, ..self.clone() }
    }

    fn run_timings(&self, inference_ms: u64) -> Timings {
        let queued_ms =
            self.started_at_ms.unwrap_or(self.submitted_at_ms).saturating_sub(self.submitted_at_ms);
        Timings { queued_ms, inference_ms, total_ms: queued_ms + inference_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::InferenceChannel;
    use crate::clock::ManualClock;
    use TaskStatus::*;

    fn queued_at(ms: u64) -> TaskRecord {
        TaskRecord::queued(&TaskEnvelope::new(
            "alice",
            "echo",
            serde_json::json!({}),
            InferenceChannel::private("alice").unwrap(),
            ms,
        ))
    }

    #[test]
    fn only_terminal_states_are_final() {
        let finals: Vec<_> = TaskStatus::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [Succeeded, Failed, Cancelled, Expired]);
    }

    #[test]
    fn nothing_leaves_a_final_state() {
        for from in TaskStatus::ALL.into_iter().filter(|s| s.is_final()) {
            for to in TaskStatus::ALL {
                assert!(!to.may_follow(Some(from)), "{from} → {to}");
            }
        }
    }

    #[test]
    fn the_allowed_moves_are_exactly_the_documented_ones() {
        let allowed: Vec<(Option<TaskStatus>, TaskStatus)> = [None]
            .into_iter()
            .chain(TaskStatus::ALL.map(Some))
            .flat_map(|from| {
                TaskStatus::ALL.into_iter().filter(move |to| to.may_follow(from)).map(move |to| (from, to))
            })
            .collect();
        assert_eq!(
            allowed,
            [
                (None, Queued),
                (None, Running),
                (None, Succeeded),
                (None, Failed),
                (None, Expired),
                (Some(Queued), Running),
                (Some(Queued), Succeeded),
                (Some(Queued), Failed),
                (Some(Queued), Cancelled),
                (Some(Queued), Expired),
                (Some(Running), Running),
                (Some(Running), Succeeded),
                (Some(Running), Failed),
                (Some(Running), Cancelled),
                (Some(Running), Expired),
            ]
        );
    }

    #[test]
    fn each_state_announces_its_event() {
        assert_eq!(Queued.event_name(), None);
        assert_eq!(Running.event_name(), Some("inference.started"));
        assert_eq!(Succeeded.event_name(), Some("inference.completed"));
        assert_eq!(Failed.event_name(), Some("inference.failed"));
        assert_eq!(Cancelled.event_name(), Some("inference.failed"));
        assert_eq!(Expired.event_name(), Some("inference.failed"));
    }

    #[test]
    fn names_on_the_wire_match_serde() {
        for status in TaskStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
    }

    #[test]
    fn a_run_is_timed_from_the_clock() {
        let clock = ManualClock::at(10_000);
        let queued = queued_at(9_000);
        let running = queued.started(&clock);
        assert_eq!((running.status, running.started_at_ms), (Running, Some(10_000)));
        assert_eq!(running.timings.unwrap().queued_ms, 1_000);
        clock.advance(250);
        let done = running.succeeded(serde_json::json!({"a": 1}), 240, &clock);
        assert_eq!(done.status, Succeeded);
        assert_eq!(done.finished_at_ms, Some(10_250));
        assert_eq!(done.timings, Some(Timings { queued_ms: 1_000, inference_ms: 240, total_ms: 1_240 }));
        assert_eq!(done.output, Some(serde_json::json!({"a": 1})));
    }

    #[test]
    fn cancelling_and_dead_lettering_say_why() {
        let clock = ManualClock::at(5);
        let cancelled = queued_at(1).cancelled(&clock);
        assert_eq!((cancelled.status, cancelled.error.unwrap().code.as_str()), (Cancelled, "cancelled"));
        let dead = queued_at(1).started(&clock).dead_lettered(&clock);
        assert_eq!(dead.status, Failed);
        assert_eq!(dead.error.unwrap().code, "delivery_limit");
        assert_eq!(dead.finished_at_ms, Some(5));
        let expired = queued_at(1).expired(&clock);
        assert_eq!((expired.status, expired.error.unwrap().code.as_str()), (Expired, "expired"));
    }

    #[test]
    fn the_status_url_sits_under_the_public_base() {
        let id = TaskId::new_v7();
        assert_eq!(status_url("", id), format!("/v1/inference/{id}"));
        assert_eq!(status_url("https://api.example/", id), format!("https://api.example/v1/inference/{id}"));
    }
}
