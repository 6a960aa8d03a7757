//! One task, from decoded message to settlement: record `running`, run the model, store
//! the result, announce it, and only then say how to settle the message.
//!
//! The message stays unacknowledged until the result is safe in the store, so a crash
//! at any point means a redelivery, and a redelivered task that already finished is
//! not run again: its stored result is announced once more (same task id) and acked.
//! Nothing here touches the broker or Soketi directly: the store and the sink are
//! traits, so `tests/processing.rs` runs this in process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use inferpush_protocol::{Clock, ErrorBody, Lane, TaskEnvelope, TaskRecord, TaskStatus};
use inferpush_store::{Claim, StoreError, TaskStore, Transition};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::delivery::{Announced, Sinks, StartedAnnouncements};
use crate::model::{ModelError, Registry, Run};

const STORE_RETRY_FIRST: Duration = Duration::from_millis(200);
const STORE_RETRY_MAX: Duration = Duration::from_secs(3);

/// What every task needs from the worker.
#[derive(Clone)]
pub struct TaskContext {
    /// The models served here.
    pub registry: Registry,
    /// Task state and results.
    pub store: Arc<dyn TaskStore>,
    /// Where events go, each sink with its own deadline.
    pub sinks: Sinks,
    /// The time, for stamping tasks.
    pub clock: Arc<dyn Clock>,
    /// Fires when tasks in hand must be given back to the queue (end of the grace period).
    pub abort: CancellationToken,
    /// Running generations' text so far, and their owners' stop requests.
    pub progress: Arc<dyn inferpush_store::ProgressStore>,
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

/// How a message reached this worker (AMQP's `redelivered` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Its first delivery.
    First,
    /// Delivered before, to a consumer that did not settle it (crashed, disconnected, or
    /// gave it back).
    Redelivered,
}

/// Runs `task` and announces its result, returning how to settle its message.
///
/// A first delivery of a task that is already running is a second copy of it (the api
/// publishes a task again when its first publish's outcome was lost): it is acked and not
/// run, since the copy that runs settles it, or, if its worker dies, comes back redelivered.
/// `lane` is the queue lane it came by, for the model's own queueing.
pub async fn process(task: TaskEnvelope, arrival: Arrival, lane: Lane, context: &TaskContext) -> Settlement {
    if !owns_its_channel(&task) {
        return Settlement::DeadLetter;
    }
    let clock = context.clock.as_ref();
    if task.is_expired(clock.now_ms()) {
        tracing::info!(task_id = %task.task_id, "the task's deadline passed before it started; not running it");
        return expire(&task, context).await;
    }
    let mut running = TaskRecord::queued(&task).started(clock);
    if let Some(provenance) = context.registry.provenance(&task.model) {
        running = running.produced_by(provenance);
    }
    let tries = std::sync::atomic::AtomicU32::new(0);
    let claim = || {
        let again = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0;
        let claim = match arrival {
            Arrival::First if again => Claim::FirstAgain,
            Arrival::First => Claim::First,
            Arrival::Redelivered => Claim::Takeover,
        };
        context.store.claim(&running, claim)
    };
    let started = match store_retrying(context, claim).await {
        Err(settlement) => return settlement,
        Ok(Transition::Kept(current)) if current.status == TaskStatus::Running => {
            tracing::info!(task_id = %task.task_id, "a second copy of a running task; not running it twice");
            return Settlement::Ack;
        }
        Ok(Transition::Kept(current)) if current.status.is_final() => {
            // Finished before (a redelivery) or cancelled: make sure the user heard, then ack.
            tracing::info!(task_id = %task.task_id, status = %current.status, "task already final; announcing it again");
            return announce(&current, StartedAnnouncements::default(), context).await;
        }
        Ok(_) => {
            crate::metrics::started(&running);
            inferpush_service::telemetry::record_span(
                &tracing::Span::current(),
                "queue_wait",
                inferpush_service::telemetry::unix_ms(task.submitted_at_ms),
                std::time::SystemTime::now(),
                Vec::new(),
            );
            context.sinks.announce_started(&running)
        }
    };

    let began = Instant::now();
    let mut started = started;
    let mut stopped = false;
    let outcome = match context.registry.get(&task.model) {
        Some(model) => {
            let span = tracing::info_span!("inference", model = task.model);
            let run = run_of(&task, lane, clock);
            if model.streams() {
                let streamed = crate::streaming::run(model, &task, &running, run, started, context)
                    .instrument(span)
                    .await;
                if streamed.handed_back {
                    return Settlement::Requeue;
                }
                (started, stopped) = (streamed.before_final, streamed.stop_asked);
                streamed.outcome
            } else {
                model.infer(&task.input, run).instrument(span).await
            }
        }
        None => Err(ModelError::Failed(format!("model `{}` is not served by this worker", task.model))),
    };
    crate::metrics::task_inference(&task.model, began.elapsed());
    let inference_ms = began.elapsed().as_millis() as u64;
    let finished = match outcome {
        // Stopped by its owner (not one that ended by itself as the request came in).
        Ok(output) if stopped && output["finish_reason"] == "cancelled" => {
            running.stopped(output, inference_ms, clock)
        }
        Ok(output) => running.succeeded(output, inference_ms, clock),
        Err(ModelError::Expired) => running.expired(clock),
        Err(error) => {
            let error = ErrorBody { code: error.code().into(), message: error.to_string() };
            running.failed(error, inference_ms, clock)
        }
    };
    finish(finished, started, context).await
}

/// How the model is to run `task`: its lane, and its deadline on this machine's clock.
fn run_of(task: &TaskEnvelope, lane: Lane, clock: &dyn Clock) -> Run {
    let deadline = task.deadline_ms.map(|deadline_ms| {
        Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(clock.now_ms()))
    });
    let id = task.task_id.0.as_u128();
    Run { lane, deadline, seed: (id as u64) ^ ((id >> 64) as u64) }
}

/// Defence in depth: a task may only ever be pushed to its own user's channel.
fn owns_its_channel(task: &TaskEnvelope) -> bool {
    let owned = task.channel.carries_results_of(&task.user_id);
    if !owned {
        tracing::error!(task_id = %task.task_id, channel = %task.channel, "task names a channel its user does not own");
    }
    owned
}

/// A dead-lettered task failed for good: record that and tell its user. One whose
/// deadline passed was dropped by the broker (its message expired) and ends `expired`.
/// One that names a channel its user does not own is dropped (acked) untold: it was never
/// a real task.
pub async fn process_dead_letter(
    task: TaskEnvelope,
    broker_expired: bool,
    context: &TaskContext,
) -> Settlement {
    if !owns_its_channel(&task) {
        return Settlement::Ack;
    }
    let clock = context.clock.as_ref();
    // The broker's word wins over this machine's clock, which may read a moment earlier.
    if broker_expired || task.is_expired(clock.now_ms()) {
        tracing::info!(task_id = %task.task_id, model = task.model, "the broker dropped a task past its deadline");
        return expire(&task, context).await;
    }
    tracing::error!(task_id = %task.task_id, model = task.model, "task reached its delivery limit; failing it");
    crate::metrics::dead_letter(&task.model);
    let failed = TaskRecord::queued(&task).dead_lettered(context.clock.as_ref());
    finish(failed, StartedAnnouncements::default(), context).await
}

/// Ends a task past its deadline unrun, `expired`, and tells its owner.
async fn expire(task: &TaskEnvelope, context: &TaskContext) -> Settlement {
    let expired = TaskRecord::queued(task).expired(context.clock.as_ref());
    finish(expired, StartedAnnouncements::default(), context).await
}

/// Stores a final record (or takes the final one already stored) and announces it (after
/// each sink's `started`).
async fn finish(record: TaskRecord, started: StartedAnnouncements, context: &TaskContext) -> Settlement {
    let stored = match store_retrying(context, || context.store.transition(&record)).await {
        Err(settlement) => return settlement,
        Ok(Transition::Kept(current)) if current.status.is_final() => *current,
        Ok(_) => {
            crate::metrics::task_state(record.status);
            record
        }
    };
    announce(&stored, started, context).await
}

/// Announces a final record to every sink it wants; the record is already safe, so
/// whatever the sinks do the task is acked, unless the worker is stopping, when it is
/// requeued and the next worker announces the stored result.
async fn announce(record: &TaskRecord, started: StartedAnnouncements, context: &TaskContext) -> Settlement {
    let push = context
        .sinks
        .announce(record, started)
        .instrument(tracing::info_span!("push", status = %record.status));
    match push.await {
        Announced::Settled => {
            crate::metrics::pushed(record, context.clock.now_ms());
            tracing::info!(task_id = %record.task_id, model = record.model, status = %record.status, "task done");
            Settlement::Ack
        }
        Announced::Aborted => Settlement::Requeue,
    }
}

/// Retries a store operation while the store is unreachable (holding the task, so the
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
