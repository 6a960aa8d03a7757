//! One task, from delivery to acknowledgement: record `running`, run the model, store
//! the result, push it, and only then ack.
//!
//! The message stays unacknowledged until the result is safe in the store, so a crash
//! at any point means a redelivery, and a redelivered task that already finished is
//! not run again: its stored result is pushed once more (same task id) and acked.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use inferpush_protocol::channel::ChannelKind;
use inferpush_protocol::encryption::{MasterKey, random_nonce};
use inferpush_protocol::event::BatchEvent;
use inferpush_protocol::{ErrorBody, InferenceChannel, TaskEnvelope, TaskRecord, TaskStatus, Timings};
use inferpush_store::{StoreError, TaskStore, Transition};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use tokio_util::sync::CancellationToken;

use crate::model::{ModelError, Registry};
use crate::publisher::{Publisher, PushError};

const STORE_RETRY_FIRST: Duration = Duration::from_millis(200);
const STORE_RETRY_MAX: Duration = Duration::from_secs(3);

/// What every task needs from the worker.
#[derive(Clone)]
pub struct TaskContext {
    /// The models served here.
    pub registry: Registry,
    /// The Soketi publisher.
    pub publisher: Publisher,
    /// Task state and results.
    pub store: TaskStore,
    /// Largest event data pushed inline; larger results go out as `result_url`.
    pub max_event_bytes: usize,
    /// Prefix of `result_url` (e.g. `https://api.example.com`; empty for a relative URL).
    pub result_base_url: String,
    /// How long to keep retrying a push before acking anyway (the result stays in the store).
    pub push_deadline: Duration,
    /// Fires when tasks in hand must be given back to the queue (end of the grace period).
    pub abort: CancellationToken,
    /// Key for `private-encrypted-` channels, when configured.
    pub master_key: Option<MasterKey>,
}

/// How a delivery ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Done: the result is stored (and pushed, or retrievable by GET).
    Ack,
    /// Give it back to the queue for another try (the worker is stopping).
    Requeue,
    /// It can never succeed: dead-letter it.
    DeadLetter,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Settles `delivery` with the broker as `settlement` says.
pub async fn settle(delivery: &Delivery, settlement: Settlement) {
    let result = match settlement {
        Settlement::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
        Settlement::Requeue => {
            delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
        }
        Settlement::DeadLetter => {
            delivery.acker.nack(BasicNackOptions { requeue: false, ..Default::default() }).await
        }
    };
    if let Err(error) = result {
        // The channel is gone; the broker will redeliver the task, which is safe.
        tracing::warn!(%error, ?settlement, "could not settle a delivery; it will be redelivered");
    }
}

/// Runs one task delivery to completion and settles it.
pub async fn handle(delivery: Delivery, context: TaskContext) {
    let settlement = match TaskEnvelope::from_bytes(&delivery.data) {
        Ok(task) => process(task, &context).await,
        Err(error) => {
            tracing::error!(%error, "undecodable task message; dead-lettering it");
            Settlement::DeadLetter
        }
    };
    settle(&delivery, settlement).await;
}

/// Runs one dead-lettered delivery: the task failed for good; record that and tell its user.
pub async fn handle_dead_letter(delivery: Delivery, context: TaskContext) {
    let settlement = match TaskEnvelope::from_bytes(&delivery.data) {
        Ok(task) => {
            tracing::error!(task_id = %task.task_id, model = task.model, "task reached its delivery limit; failing it");
            let mut failed = TaskRecord::queued(&task);
            failed.status = TaskStatus::Failed;
            failed.finished_at_ms = Some(now_ms());
            failed.error = Some(ErrorBody {
                code: "delivery_limit".into(),
                message: "the task was delivered to workers too many times without finishing \
                          (each attempt crashed or was stopped); it has been set aside"
                    .into(),
            });
            finish(failed, &context).await
        }
        Err(error) => {
            // Garbage with no user to tell: it stays visible in the logs, not in the queue.
            tracing::error!(%error, bytes = delivery.data.len(), "dropping an undecodable dead letter");
            Settlement::Ack
        }
    };
    settle(&delivery, settlement).await;
}

/// Runs `task` and announces its result, returning how to settle its message.
pub async fn process(task: TaskEnvelope, context: &TaskContext) -> Settlement {
    // Defence in depth: a task may only ever be pushed to its own user's channel.
    let own_channel = InferenceChannel::parse(&task.channel).is_ok_and(|c| {
        c.is_owned_by(&task.user_id)
            && matches!(c.kind(), ChannelKind::Private | ChannelKind::PrivateEncrypted)
    });
    if !own_channel {
        tracing::error!(task_id = %task.task_id, channel = task.channel, "task names a channel its user does not own");
        return Settlement::DeadLetter;
    }
    let started_ms = now_ms();
    let mut record = TaskRecord::queued(&task);
    record.status = TaskStatus::Running;
    record.started_at_ms = Some(started_ms);
    match store_retrying(context, || context.store.transition(&record)).await {
        Err(settlement) => return settlement,
        Ok(Transition::Kept(current)) if current.status.is_final() => {
            // Finished before (a redelivery) or cancelled: make sure the user heard, then ack.
            tracing::info!(task_id = %task.task_id, status = ?current.status, "task already final; announcing it again");
            return announce(&current, context).await;
        }
        Ok(_) => announce_started(&record, started_ms.saturating_sub(task.submitted_at_ms), context),
    }

    let started = Instant::now();
    let outcome = match context.registry.get(&task.model) {
        Some(model) => model.infer(&task.input).await,
        None => Err(ModelError::Failed(format!("model `{}` is not served by this worker", task.model))),
    };
    let inference_ms = started.elapsed().as_millis() as u64;
    let queued_ms = started_ms.saturating_sub(task.submitted_at_ms);
    record.timings = Some(Timings { queued_ms, inference_ms, total_ms: queued_ms + inference_ms });
    record.finished_at_ms = Some(now_ms());
    match outcome {
        Ok(output) => {
            record.status = TaskStatus::Succeeded;
            record.output = Some(output);
        }
        Err(error) => {
            record.status = TaskStatus::Failed;
            record.error = Some(ErrorBody { code: error.code().into(), message: error.to_string() });
        }
    }
    finish(record, context).await
}

/// Stores a final record (or takes the final one already stored) and announces it.
async fn finish(record: TaskRecord, context: &TaskContext) -> Settlement {
    let stored = match store_retrying(context, || context.store.transition(&record)).await {
        Err(settlement) => return settlement,
        Ok(Transition::Kept(current)) if current.status.is_final() => *current,
        Ok(_) => record,
    };
    announce(&stored, context).await
}

/// How long an `inference.started` push may take before it is dropped.
const STARTED_PUSH_WINDOW: Duration = Duration::from_secs(5);

/// The key that seals events for `record`'s channel: `Ok(None)` for a plain channel,
/// `Err` for an encrypted one when no master key is configured (nothing goes out in clear).
fn seal_for<'a>(record: &TaskRecord, context: &'a TaskContext) -> Result<Option<&'a MasterKey>, ()> {
    match (record.channel.starts_with(ChannelKind::PrivateEncrypted.prefix()), &context.master_key) {
        (false, _) => Ok(None),
        (true, Some(key)) => Ok(Some(key)),
        (true, None) => Err(()),
    }
}

/// Tells the owner a worker started the task (`inference.started`, status `running`, with
/// `queued_ms`), in the background and on a best-effort basis: it never holds the task,
/// and a lost one costs nothing, since the final event and the status API are what count.
fn announce_started(record: &TaskRecord, queued_ms: u64, context: &TaskContext) {
    let Ok(seal) = seal_for(record, context) else { return };
    let mut event = record.event();
    event.timings = Timings { queued_ms, inference_ms: 0, total_ms: queued_ms };
    let data = render(&event, &record.channel, seal);
    let push = BatchEvent { channel: record.channel.clone(), name: event.event_name().to_owned(), data };
    let publisher = context.publisher.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(STARTED_PUSH_WINDOW, publisher.push(push)).await;
    });
}

/// Pushes the event of a final record; the record is already safe, so whatever Soketi
/// does, the task is acked (unless the worker is stopping, when it is requeued and the
/// next worker pushes the stored result).
async fn announce(record: &TaskRecord, context: &TaskContext) -> Settlement {
    let Ok(seal) = seal_for(record, context) else {
        tracing::error!(task_id = %record.task_id, "no PUSHER_ENCRYPTION_MASTER_KEY: not pushing to an encrypted channel in clear; the result stays retrievable by GET");
        return Settlement::Ack;
    };
    let (event, data) = result_event(record, context.max_event_bytes, &context.result_base_url, seal);
    let push = BatchEvent { channel: record.channel.clone(), name: event.event_name().to_owned(), data };
    match tokio::time::timeout(context.push_deadline, context.publisher.push(push)).await {
        Ok(Ok(())) => {
            tracing::info!(task_id = %record.task_id, model = record.model, status = ?record.status, "task done");
            Settlement::Ack
        }
        Ok(Err(PushError::Aborted)) => Settlement::Requeue,
        Ok(Err(PushError::Rejected(reason))) => {
            tracing::error!(task_id = %record.task_id, reason, "Soketi refused the result; it stays retrievable by GET");
            Settlement::Ack
        }
        Err(_) => {
            tracing::warn!(task_id = %record.task_id, deadline = ?context.push_deadline, "could not push in time; the result stays retrievable by GET");
            Settlement::Ack
        }
    }
}

/// Retries a store operation while Redis is unreachable (holding the task, so the
/// worker effectively pauses) until it answers or the worker aborts.
async fn store_retrying<T, F, Fut>(context: &TaskContext, operation: F) -> Result<T, Settlement>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut wait = STORE_RETRY_FIRST;
    loop {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(StoreError::Corrupt(error)) => {
                tracing::error!(%error, "corrupt task record; dead-lettering the task");
                return Err(Settlement::DeadLetter);
            }
            Err(StoreError::Unavailable(error)) => {
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "task store unavailable; holding the task");
                tokio::select! {
                    _ = context.abort.cancelled() => return Err(Settlement::Requeue),
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(STORE_RETRY_MAX);
            }
        }
    }
}

/// An event's data as pushed: JSON, sealed when the channel is encrypted.
fn render(event: &inferpush_protocol::InferenceEvent, channel: &str, seal: Option<&MasterKey>) -> String {
    let json = serde_json::to_string(event).expect("events always serialise");
    match seal {
        Some(key) => key.seal(channel, random_nonce(), &json),
        None => json,
    }
}

/// The event announcing a final record and its data as pushed (sealed for an encrypted
/// channel); an output too large for one event is replaced by a `result_url`.
pub fn result_event(
    record: &TaskRecord,
    max_event_bytes: usize,
    result_base_url: &str,
    seal: Option<&MasterKey>,
) -> (inferpush_protocol::InferenceEvent, String) {
    let mut event = record.event();
    let mut data = render(&event, &record.channel, seal);
    // Measured as pushed: sealing grows the data by about a third.
    if data.len() > max_event_bytes {
        event.output = None;
        event.result_url = Some(format!("{result_base_url}/v1/inference/{}", record.task_id));
        data = render(&event, &record.channel, seal);
    }
    (event, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use inferpush_protocol::TaskId;
    use serde_json::json;

    fn record(output: serde_json::Value) -> TaskRecord {
        let mut record = TaskRecord::queued(&TaskEnvelope {
            task_id: TaskId::new_v7(),
            user_id: "alice".into(),
            model: "echo".into(),
            input: json!({}),
            channel: "private-inference.alice".into(),
            submitted_at_ms: 0,
        });
        record.status = TaskStatus::Succeeded;
        record.output = Some(output);
        record
    }

    #[test]
    fn small_results_travel_inline() {
        let (event, _) = result_event(&record(json!({"text": "hi"})), 1000, "", None);
        assert_eq!(event.output, Some(json!({"text": "hi"})));
        assert!(event.result_url.is_none());
        assert_eq!(event.event_name(), "inference.completed");
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
        assert_eq!(event.event_name(), "inference.failed");
        assert_eq!(event.error.unwrap().code, "invalid_input");
    }

    #[test]
    fn the_event_limit_counts_the_sealed_size() {
        use base64::Engine;
        let key =
            MasterKey::from_base64(&base64::engine::general_purpose::STANDARD.encode([5u8; 32])).unwrap();
        let mut result = record(json!({"text": "x".repeat(700)}));
        result.channel = "private-encrypted-inference.alice".into();
        let (plain, _) = result_event(&result, 1000, "", None);
        assert!(plain.output.is_some(), "fits in clear");
        let (sealed, data) = result_event(&result, 1000, "", Some(&key));
        assert!(sealed.output.is_none() && sealed.result_url.is_some(), "does not fit once sealed");
        assert!(data.len() <= 1000 && !data.contains("xxx"));
    }
}
