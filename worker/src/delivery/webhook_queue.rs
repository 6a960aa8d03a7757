//! Webhook attempts through RabbitMQ, off the task: a task's webhook is handed to the
//! durable `{prefix}.webhooks` queue (publisher-confirmed) and its task is done with it;
//! each worker consumes that queue on its own channel and prefetch
//! (`INFERPUSH_WEBHOOK_CONCURRENCY`), so a receiver that never answers holds webhook
//! slots for one request timeout at a time, never the model queues' prefetch. An attempt
//! that may pass later goes to a retry queue whose messages expire back into the webhook
//! queue after a delay that grows with the attempts ([`RETRY_DELAYS_SECS`]), for as long
//! as `INFERPUSH_WEBHOOK_DEADLINE` allows, every attempt with the same `webhook-id`. A
//! receiver down for hours costs no worker capacity while it is down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use inferpush_protocol::{TaskId, Topology};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::{BasicProperties, Channel};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{PushError, jittered};

pub use inferpush_protocol::topology::WEBHOOK_RETRY_DELAYS_SECS as RETRY_DELAYS_SECS;
/// How long handing a job to the broker may take before that try counts as failed.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One webhook to send, as it travels through the queues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    /// The task it is about.
    pub task_id: TaskId,
    /// The event, e.g. `inference.completed`.
    pub kind: String,
    /// Where it goes.
    pub url: String,
    /// Its `webhook-id`, the same on every attempt.
    pub id: String,
    /// The signed body (each attempt is signed with its own timestamp).
    pub body: String,
    /// Attempts made so far.
    pub attempt: u32,
    /// When to stop trying, in ms since the epoch.
    pub give_up_at_ms: u64,
}

impl WebhookJob {
    /// The delay before the next attempt, after `self.attempt` attempts.
    pub fn next_delay_secs(&self) -> u64 {
        let index = (self.attempt as usize).saturating_sub(1).min(RETRY_DELAYS_SECS.len() - 1);
        RETRY_DELAYS_SECS[index]
    }
}

/// Publishes webhook jobs on the current RabbitMQ session's channel (confirm mode).
#[derive(Clone)]
pub struct WebhookQueue {
    channel: Arc<Mutex<Option<Channel>>>,
    topology: Topology,
}

impl WebhookQueue {
    /// No channel yet: jobs wait until a session attaches one.
    pub fn new(topology: Topology) -> Self {
        Self { channel: Arc::default(), topology }
    }

    /// The session's publishing channel (in confirm mode), or none between sessions.
    pub fn attach(&self, channel: Option<Channel>) {
        *self.channel.lock().expect("not poisoned") = channel;
    }

    /// Publishes `job` to `queue` persistently and waits for the broker's confirm.
    async fn publish(&self, queue: &str, job: &WebhookJob) -> Result<(), String> {
        let channel = self.channel.lock().expect("not poisoned").clone();
        let channel = channel.ok_or("not connected to RabbitMQ")?;
        let body = serde_json::to_vec(job).expect("jobs always serialise");
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(job.id.as_str().into());
        let sending = async {
            let confirm = channel
                .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), &body, properties)
                .await
                .map_err(|e| e.to_string())?;
            let confirmation = confirm.await.map_err(|e| e.to_string())?;
            if confirmation.is_ack() { Ok(()) } else { Err("the broker nacked the webhook".to_owned()) }
        };
        tokio::time::timeout(CONFIRM_TIMEOUT, sending)
            .await
            .map_err(|_| "no publisher confirm in time".to_owned())?
    }

    /// Hands a first attempt to the webhook queue, trying until it is confirmed (the
    /// caller's deadline bounds it) or the worker aborts.
    pub async fn enqueue(&self, job: &WebhookJob, abort: &CancellationToken) -> Result<(), PushError> {
        let queue = self.topology.webhook_queue();
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.publish(&queue, job).await {
                Ok(()) => return Ok(()),
                Err(reason) => {
                    let wait = jittered(backoff);
                    tracing::warn!(task_id = %job.task_id, reason, retry_in_ms = wait.as_millis() as u64, "could not queue a webhook");
                    tokio::select! {
                        _ = abort.cancelled() => return Err(PushError::Aborted),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Puts `job` (its attempts counted) in the retry queue of its next delay.
    async fn retry_later(&self, job: &WebhookJob) -> Result<(), String> {
        self.publish(&self.topology.webhook_retry_queue(job.next_delay_secs()), job).await
    }
}

/// What one attempt came to.
pub enum Outcome {
    /// The receiver took it.
    Delivered,
    /// It may pass later.
    Retry(String),
    /// It never will (a 4xx, or a target that is not allowed).
    Rejected(String),
}

/// Settles one delivery of the webhook queue: attempts it with `attempt`, then acks it,
/// after queueing a retry when it may pass later and time is left. A retry that cannot be
/// queued now leaves the delivery to the broker (nack, requeue): nothing is dropped.
pub async fn settle<F>(delivery: Delivery, queue: &WebhookQueue, now_ms: u64, attempt: F)
where
    F: AsyncFnOnce(&WebhookJob) -> Outcome,
{
    let mut job: WebhookJob = match serde_json::from_slice(&delivery.data) {
        Ok(job) => job,
        Err(error) => {
            tracing::error!(%error, "an unreadable message in the webhook queue; dropping it");
            let _ = delivery.ack(BasicAckOptions::default()).await;
            return;
        }
    };
    let task_id = job.task_id;
    let outcome = if now_ms >= job.give_up_at_ms {
        Outcome::Rejected("its deadline passed before this attempt".into())
    } else {
        attempt(&job).await
    };
    job.attempt += 1;
    crate::metrics::webhook_attempt(match &outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry(_) => "retry",
        Outcome::Rejected(_) => "rejected",
    });
    match outcome {
        Outcome::Delivered => {}
        Outcome::Rejected(reason) => {
            tracing::error!(%task_id, url = job.url, reason, attempts = job.attempt, "webhook refused; not retried");
        }
        Outcome::Retry(reason) => {
            let delay = job.next_delay_secs();
            if now_ms + delay * 1000 >= job.give_up_at_ms {
                tracing::warn!(%task_id, url = job.url, reason, attempts = job.attempt, "webhook gave up: INFERPUSH_WEBHOOK_DEADLINE passed");
            } else {
                tracing::warn!(%task_id, url = job.url, reason, attempts = job.attempt, retry_in_s = delay, "webhook failed; retrying later");
                if let Err(error) = queue.retry_later(&job).await {
                    tracing::warn!(%task_id, error, "could not queue the webhook's retry; the broker keeps it");
                    let requeue = BasicNackOptions { requeue: true, ..Default::default() };
                    let _ = delivery.nack(requeue).await;
                    return;
                }
            }
        }
    }
    let _ = delivery.ack(BasicAckOptions::default()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_and_longer_up_to_an_hour() {
        let job = |attempt| WebhookJob {
            task_id: TaskId::new_v7(),
            kind: "inference.completed".into(),
            url: "https://hooks.example.com".into(),
            id: "msg_x".into(),
            body: "{}".into(),
            attempt,
            give_up_at_ms: 0,
        };
        let delays: Vec<u64> = (1..=10).map(|n| job(n).next_delay_secs()).collect();
        assert_eq!(delays, [1, 5, 30, 120, 600, 3600, 3600, 3600, 3600, 3600]);
        let round_trip: WebhookJob = serde_json::from_slice(&serde_json::to_vec(&job(3)).unwrap()).unwrap();
        assert_eq!(round_trip.attempt, 3);
    }
}
