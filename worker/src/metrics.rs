//! The worker's metrics (served by its own listener at `/metrics`, next to the health
//! checks): queue wait, batches (size, tokens, tokenization and inference time per model and
//! engine), pushes (duration, failures by status), dead letters, the task states it writes,
//! and the one users care about most: end to end, from accepted to pushed.

use std::time::Duration;

use inferpush_protocol::{TaskRecord, TaskStatus};

use crate::model::embedding::Encoded;
pub use inferpush_service::metrics::task_state;
use inferpush_service::metrics::{model_label, seconds_between_ms};
use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

/// From the api's accepting a task to a worker's starting it, by `model`.
pub const QUEUE_WAIT: &str = "inferpush_worker_queue_wait_seconds";
/// One task's run in its model (with any wait for its batch), by `model`.
pub const TASK_INFERENCE: &str = "inferpush_worker_task_inference_duration_seconds";
/// Texts in one forward pass, by `model` and `engine`.
pub const BATCH_SIZE: &str = "inferpush_worker_batch_size";
/// Real (unpadded) tokens in one forward pass, by `model` and `engine`.
pub const BATCH_TOKENS: &str = "inferpush_worker_batch_tokens";
/// Tokens per forward pass, padding included, by `model` and `engine`.
pub const BATCH_PADDED_TOKENS: &str = "inferpush_worker_batch_padded_tokens";
/// Tokenizing one task's texts, by `model` and `engine`.
pub const TOKENIZATION: &str = "inferpush_worker_tokenization_duration_seconds";
/// One forward pass, by `model` and `engine`.
pub const INFERENCE: &str = "inferpush_worker_inference_duration_seconds";
/// One signed `batch_events` call to the Pusher server.
pub const PUSH: &str = "inferpush_worker_push_duration_seconds";
/// Pusher calls that failed, by `status` (the HTTP status, `network`, or `refused` for an
/// error in a 200 answer).
pub const PUSH_FAILURES: &str = "inferpush_worker_push_failures_total";
/// Tasks failed for good after their delivery limit, by `model`.
pub const DEAD_LETTERS: &str = "inferpush_worker_dead_letters_total";
/// From the api's accepting a task to its final event being pushed, by `model` and `status`.
pub const END_TO_END: &str = "inferpush_worker_end_to_end_duration_seconds";

/// Events handed to a sink, by `sink`, `event` (the task status it announces) and
/// `outcome` (`delivered`, `refused`, `timeout`, `aborted`).
pub const DELIVERIES: &str = "inferpush_worker_deliveries_total";
/// From handing an event to a sink until it settled, by `sink`.
pub const DELIVERY: &str = "inferpush_worker_delivery_duration_seconds";
/// Webhook attempts made from the webhook queue, by `outcome` (`delivered`, `retry`,
/// `rejected`).
pub const WEBHOOK_ATTEMPTS: &str = "inferpush_worker_webhook_attempts_total";

/// Registers the descriptions (shown as `# HELP`).
pub fn describe() {
    describe_histogram!(QUEUE_WAIT, Unit::Seconds, "Accepted by the api until a worker started it");
    describe_histogram!(TASK_INFERENCE, Unit::Seconds, "One task's run in its model, batching included");
    describe_histogram!(BATCH_SIZE, Unit::Count, "Texts per forward pass");
    describe_histogram!(BATCH_TOKENS, Unit::Count, "Real tokens per forward pass");
    describe_histogram!(BATCH_PADDED_TOKENS, Unit::Count, "Tokens per forward pass, padding included");
    describe_histogram!(TOKENIZATION, Unit::Seconds, "Tokenizing one task's texts");
    describe_histogram!(INFERENCE, Unit::Seconds, "One forward pass");
    describe_histogram!(PUSH, Unit::Seconds, "One batch_events call to the Pusher server");
    describe_counter!(PUSH_FAILURES, "Failed calls to the Pusher server, by status");
    describe_counter!(DEAD_LETTERS, "Tasks failed for good after their delivery limit");
    describe_counter!(DELIVERIES, "Events handed to a sink, by sink, event and outcome");
    describe_histogram!(DELIVERY, Unit::Seconds, "Handing an event to a sink until it settled, by sink");
    describe_counter!(WEBHOOK_ATTEMPTS, "Webhook attempts from the webhook queue, by outcome");
    describe_histogram!(END_TO_END, Unit::Seconds, "Accepted by the api until its final event was pushed");
    inferpush_service::metrics::describe_shared();
}

/// A task started after waiting in the queue since it was accepted.
pub fn started(record: &TaskRecord) {
    let waited = seconds_between_ms(record.submitted_at_ms, record.started_at_ms.unwrap_or_default());
    histogram!(QUEUE_WAIT, "model" => model_label(&record.model)).record(waited);
    task_state(TaskStatus::Running);
}

/// A task's run in its model took `took`.
pub fn task_inference(model: &str, took: Duration) {
    histogram!(TASK_INFERENCE, "model" => model_label(model)).record(took.as_secs_f64());
}

/// One forward pass over `batch`, which took `inferring`.
pub fn batch(model: &'static str, engine: &'static str, batch: &Encoded, inferring: Duration) {
    histogram!(BATCH_SIZE, "model" => model, "engine" => engine).record(batch.rows as f64);
    histogram!(BATCH_TOKENS, "model" => model, "engine" => engine).record(batch.real_tokens() as f64);
    histogram!(BATCH_PADDED_TOKENS, "model" => model, "engine" => engine)
        .record((batch.rows * batch.seq_len) as f64);
    histogram!(INFERENCE, "model" => model, "engine" => engine).record(inferring.as_secs_f64());
}

/// Tokenising one task's texts for `engine` took `took`.
pub fn tokenization(model: &'static str, engine: &'static str, took: Duration) {
    histogram!(TOKENIZATION, "model" => model, "engine" => engine).record(took.as_secs_f64());
}

/// One call to the Pusher server, and how it failed if it did.
pub fn push(took: Duration, failure: Option<&'static str>) {
    histogram!(PUSH).record(took.as_secs_f64());
    if let Some(status) = failure {
        counter!(PUSH_FAILURES, "status" => status).increment(1);
    }
}

/// A task was dead-lettered.
pub fn dead_letter(model: &str) {
    counter!(DEAD_LETTERS, "model" => model_label(model)).increment(1);
}

/// One webhook attempt from the webhook queue.
pub fn webhook_attempt(outcome: &'static str) {
    counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
}

/// A task's final event was pushed at `now_ms`.
pub fn pushed(record: &TaskRecord, now_ms: u64) {
    let (model, status) = (model_label(&record.model), record.status.as_str());
    histogram!(END_TO_END, "model" => model, "status" => status)
        .record(seconds_between_ms(record.submitted_at_ms, now_ms));
}

/// A sink settled an event announcing `status` after `took`.
pub fn delivered(
    sink: inferpush_protocol::SinkKind,
    status: &'static str,
    outcome: &Result<Result<(), crate::delivery::PushError>, tokio::time::error::Elapsed>,
    took: Duration,
) {
    use crate::delivery::PushError;
    let outcome = match outcome {
        Ok(Ok(())) => "delivered",
        Ok(Err(PushError::Rejected(_))) => "refused",
        Ok(Err(PushError::Aborted)) => "aborted",
        Err(_) => "timeout",
    };
    let sink = sink.name();
    counter!(DELIVERIES, "sink" => sink, "event" => status, "outcome" => outcome).increment(1);
    histogram!(DELIVERY, "sink" => sink).record(took.as_secs_f64());
}

/// The label of an HTTP status the Pusher server answered with.
pub fn status_label(status: u16) -> &'static str {
    match status {
        200..=299 => "refused",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        413 => "413",
        429 => "429",
        500..=599 => "5xx",
        _ => "other",
    }
}
