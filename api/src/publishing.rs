//! Handing a recorded task to the queue, and what to do when the broker's answer is lost.
//!
//! A publish ends one of three ways. Confirmed: the task is queued. Refused or never sent:
//! nothing is queued, the caller removes the record and says so. Unconfirmed (the confirm
//! came too late, or the connection broke while waiting for it): the broker may hold the
//! task or may not. Then the record stays, the client is told the task's id and that its
//! fate is unknown, and a follow-up in the background settles it: it stops as soon as a
//! worker has taken the task (its record left `queued`), publishes it again while it has
//! not, and after [`GIVE_UP_AFTER`] marks it failed (`not_queued`), which frees its
//! in-flight slot. A second copy is harmless: a worker runs a task id once.
//!
//! The follow-up lives in the replica that took the task; so that a replica that dies
//! (between recording a task and its confirm, or during the follow-up) leaves nothing
//! `queued` for ever, each submit is first noted in the store as an [`Intent`], settled
//! once its publish is. Every replica sweeps the intents older than
//! `INFERPUSH_UNSETTLED_GRACE` ([`sweep_forever`]): a task a worker took, or never
//! recorded, is settled; one still `queued` is published again (or, past
//! [`GIVE_UP_AFTER`], marked failed), whichever replica made it.

use std::time::Duration;

use inferpush_protocol::{Lane, TaskEnvelope, TaskId, TaskRecord, TaskStatus};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::queue::{QueueError, publish_within};

/// How long the follow-up keeps trying to queue a task whose publish went unconfirmed.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(10 * 60);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(30);

/// A recorded task and what it was submitted with.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The task, as recorded.
    pub task: TaskEnvelope,
    /// Its W3C trace context.
    pub traceparent: String,
    /// The client's `Idempotency-Key`, if it sent one.
    pub idempotency_key: Option<String>,
    /// Which of its model's queues it goes to.
    pub lane: Lane,
}

impl Submission {
    /// Publishes the task within the publish timeout and, once confirmed, marks its key.
    /// An unconfirmed publish starts the follow-up before it is returned.
    pub async fn publish(&self, state: &AppState) -> Result<(), QueueError> {
        match self.publish_once(state).await {
            Ok(()) => {
                self.confirm_published(state).await;
                Ok(())
            }
            Err(QueueError::Unconfirmed(reason)) => {
                tracing::warn!(task_id = %self.task.task_id, reason, "publish unconfirmed; following the task up");
                let (state, submission) = (state.clone(), self.clone());
                tokio::spawn(async move {
                    submission.follow_up(&state).await;
                    Intent(submission.task.task_id).settle(&state);
                });
                Err(QueueError::Unconfirmed(reason))
            }
            Err(other) => Err(other),
        }
    }

    async fn publish_once(&self, state: &AppState) -> Result<(), QueueError> {
        let started = std::time::Instant::now();
        let published = publish_within(
            state.publish_timeout,
            state.queue.as_ref(),
            &self.task,
            &self.traceparent,
            self.lane,
        )
        .await;
        if published.is_ok() {
            crate::metrics::publish_confirmed(started.elapsed());
        }
        published
    }

    /// Marks the key's task as published. On failure the key stays pending, and a late
    /// replay publishes the task a second time: the worker runs a task id once.
    async fn confirm_published(&self, state: &AppState) {
        let Some(key) = &self.idempotency_key else { return };
        let task = &self.task;
        if let Err(error) = state.store.confirm_published(&task.user_id, key, task.task_id).await {
            tracing::warn!(%error, task_id = %task.task_id, "could not mark the idempotency key published");
        }
    }

    /// Settles a task whose publish went unconfirmed (see the module's notes).
    async fn follow_up(&self, state: &AppState) {
        let task_id = self.task.task_id;
        let give_up_at = tokio::time::Instant::now() + GIVE_UP_AFTER;
        let mut wait = FIRST_RETRY;
        loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(LONGEST_RETRY);
            let record = match state.store.get(&self.task.user_id, task_id).await {
                Ok(Some(record)) if record.status == TaskStatus::Queued => record,
                Ok(Some(_)) => {
                    tracing::info!(%task_id, "an unconfirmed task reached a worker after all");
                    return self.confirm_published(state).await;
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, %task_id, "following an unconfirmed task up: store unavailable");
                    continue;
                }
            };
            if tokio::time::Instant::now() >= give_up_at {
                return self.give_up(state, &record).await;
            }
            match self.publish_once(state).await {
                Ok(()) => {
                    tracing::info!(%task_id, "an unconfirmed task is queued now");
                    return self.confirm_published(state).await;
                }
                Err(QueueError::Refused(reason)) => {
                    tracing::error!(%task_id, reason, "the broker refused an unconfirmed task");
                    return self.give_up(state, &record).await;
                }
                Err(error) => tracing::warn!(%error, %task_id, "an unconfirmed task is still not queued"),
            }
        }
    }

    async fn give_up(&self, state: &AppState, record: &TaskRecord) {
        let failed = record.not_queued(state.clock.as_ref());
        match state.store.transition(&failed).await {
            Ok(_) => {
                crate::metrics::task_state(TaskStatus::Failed);
                tracing::error!(task_id = %record.task_id, "gave up queueing a task; it is marked failed")
            }
            Err(error) => {
                tracing::error!(%error, task_id = %record.task_id, "could not mark an unqueued task failed")
            }
        }
    }
}

/// What a sweep needs to publish a task again, as noted in the store.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    task: TaskEnvelope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
}

/// A submit noted in the store until its publish is settled.
#[must_use = "an intent is settled once its publish is"]
pub struct Intent(TaskId);

impl Intent {
    /// Notes `task` as being published.
    pub async fn note(
        state: &AppState,
        task: &TaskEnvelope,
        idempotency_key: Option<&str>,
    ) -> Result<Self, crate::error::AppError> {
        let pending = Pending { task: task.clone(), idempotency_key: idempotency_key.map(str::to_owned) };
        let pending = serde_json::to_string(&pending).expect("pending publishes always serialise");
        state.store.intend_publish(task.task_id, &pending, state.clock.now_ms()).await?;
        Ok(Self(task.task_id))
    }

    /// The publish is settled (in the background: a failure only leaves the sweep a
    /// little to do).
    pub fn settle(&self, state: &AppState) {
        let (store, task_id) = (state.store.clone(), self.0);
        tokio::spawn(async move {
            if let Err(error) = store.settle_publish(task_id).await {
                tracing::debug!(%error, %task_id, "could not settle a publish intent; a sweep will");
            }
        });
    }
}

/// How often a replica sweeps the unsettled publishes.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Intents one sweep takes at most.
const SWEEP_BATCH: usize = 50;

/// Sweeps unsettled publishes older than the state's grace, for as long as the process runs.
pub async fn sweep_forever(state: AppState) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        if let Err(error) = sweep(&state).await {
            tracing::debug!(%error, "sweeping unsettled publishes: the store is unavailable");
        }
    }
}

/// One sweep: settles what is settled, publishes again what is still queued (or gives it
/// up past [`GIVE_UP_AFTER`]); answers how many intents it took.
pub async fn sweep(state: &AppState) -> Result<usize, inferpush_store::StoreError> {
    let now_ms = state.clock.now_ms();
    let cutoff = now_ms.saturating_sub(state.unsettled_grace.as_millis() as u64);
    let due = state.store.take_unsettled(cutoff, now_ms, SWEEP_BATCH).await?;
    let taken = due.len();
    for (task_id, pending) in due {
        let Ok(pending) = serde_json::from_str::<Pending>(&pending) else {
            tracing::error!(%task_id, "an unreadable publish intent; dropping it");
            Intent(task_id).settle(state);
            continue;
        };
        let submission = Submission {
            traceparent: format!(
                "00-{}-{}-01",
                task_id.0.simple(),
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ),
            task: pending.task,
            idempotency_key: pending.idempotency_key,
            lane: Lane::Main,
        };
        let settled = match state.store.get(&submission.task.user_id, task_id).await? {
            // Never recorded (its replica died first), or expired: nothing to do.
            None => true,
            Some(record) if record.status != TaskStatus::Queued => {
                submission.confirm_published(state).await;
                true
            }
            Some(record) => {
                let age = Duration::from_millis(now_ms.saturating_sub(record.submitted_at_ms));
                if age >= GIVE_UP_AFTER {
                    submission.give_up(state, &record).await;
                    true
                } else {
                    match submission.publish_once(state).await {
                        Ok(()) => {
                            tracing::info!(%task_id, "swept: a task its replica never saw confirmed is queued now");
                            submission.confirm_published(state).await;
                            true
                        }
                        Err(QueueError::Refused(reason)) => {
                            tracing::error!(%task_id, reason, "swept: the broker refused the task");
                            submission.give_up(state, &record).await;
                            true
                        }
                        Err(error) => {
                            tracing::warn!(%error, %task_id, "swept: the task is still not queued; the next sweep tries again");
                            false
                        }
                    }
                }
            }
        };
        if settled {
            Intent(task_id).settle(state);
        }
    }
    Ok(taken)
}
