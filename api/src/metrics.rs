//! The api's metrics (served on its own port at `/metrics`): submits by model and outcome,
//! the broker's confirm latency, refusals by authentication and by rate limit, and the task
//! states the api writes.

use std::time::Duration;

pub use inferpush_service::metrics::{model_label, task_state};
use metrics::{counter, describe_counter, describe_histogram, histogram};

/// Submits answered, by `model` and `outcome` (`accepted`, or the error's kind).
pub const SUBMITS: &str = "inferpush_api_submits_total";
/// From handing a task to RabbitMQ to its publisher confirm (connecting included).
pub const PUBLISH_CONFIRM: &str = "inferpush_api_publish_confirm_duration_seconds";
/// Requests refused for their credentials, by `status` (401, 403).
pub const AUTH_REFUSALS: &str = "inferpush_api_auth_refusals_total";
/// Requests refused by a per-user rate limit, by `limit`.
pub const RATE_LIMITED: &str = "inferpush_api_rate_limited_total";
/// Event streams cut off because their client fell too far behind.
pub const STREAMS_CUT_OFF: &str = "inferpush_api_event_streams_cut_off_total";

/// Registers the descriptions (shown as `# HELP`).
pub fn describe() {
    describe_counter!(SUBMITS, "Submits answered, by model and outcome (accepted, or the error's kind)");
    describe_histogram!(PUBLISH_CONFIRM, metrics::Unit::Seconds, "Publish to RabbitMQ until its confirm");
    describe_counter!(AUTH_REFUSALS, "Requests refused for their credentials, by HTTP status");
    describe_counter!(RATE_LIMITED, "Requests refused by a per-user rate limit, by limit");
    describe_counter!(STREAMS_CUT_OFF, "Event streams cut off because their client fell too far behind");
    inferpush_service::metrics::describe_shared();
}

/// One submit answered.
pub fn submit(model: &'static str, outcome: &'static str) {
    counter!(SUBMITS, "model" => model, "outcome" => outcome).increment(1);
}

/// One confirmed publish, and how long it took.
pub fn publish_confirmed(took: Duration) {
    histogram!(PUBLISH_CONFIRM).record(took.as_secs_f64());
}

/// One request refused for its credentials.
pub fn auth_refused(status: u16) {
    let status = if status == 401 { "401" } else { "403" };
    counter!(AUTH_REFUSALS, "status" => status).increment(1);
}

/// One request over a rate limit.
pub fn rate_limited(limit: &'static str) {
    counter!(RATE_LIMITED, "limit" => limit).increment(1);
}

/// One event stream cut off for falling behind.
pub fn stream_cut_off() {
    counter!(STREAMS_CUT_OFF).increment(1);
}
