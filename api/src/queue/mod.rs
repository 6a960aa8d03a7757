//! Where accepted tasks go: one small trait ([`TaskQueue`]), with RabbitMQ as the real
//! queue ([`amqp::Broker`]). In-process tests give the api a queue of their own.

pub mod amqp;

use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::{Lane, TaskEnvelope};

/// How long the api waits for a publish (connecting included) by default before it
/// answers 503 (`INFERPUSH_PUBLISH_TIMEOUT`).
pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);

/// [`TaskQueue::publish`] bounded by `timeout`, for queues that do not bound it themselves:
/// past it, whether the queue took the task is unknown.
pub async fn publish_within(
    timeout: Duration,
    queue: &dyn TaskQueue,
    task: &TaskEnvelope,
    traceparent: &str,
    lane: Lane,
) -> Result<(), QueueError> {
    tokio::time::timeout(timeout, queue.publish(task, traceparent, lane))
        .await
        .unwrap_or_else(|_| Err(QueueError::Unconfirmed(format!("no publisher confirm within {timeout:?}"))))
}

/// Why a task could not be handed to the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Could not connect, or the broker said it could not take the message now: nothing
    /// was queued, and a retry may succeed.
    #[error("the message broker is unreachable: {0}")]
    Unreachable(String),
    /// The message was sent but its confirm never came (too slow, or the connection broke
    /// after sending): the broker may hold the task or may not.
    #[error("the message broker did not confirm the task: {0}")]
    Unconfirmed(String),
    /// The broker refused to take the message (nack, or no queue for the model).
    #[error("the message broker refused the task: {0}")]
    Refused(String),
}

/// A queue that durably accepts tasks.
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Hands `task` over to its model's queue in `lane` and returns only once the queue has
    /// it safe (publisher confirm), with `traceparent` travelling beside it.
    async fn publish(&self, task: &TaskEnvelope, traceparent: &str, lane: Lane) -> Result<(), QueueError>;

    /// True when a task could be accepted now.
    async fn is_ready(&self) -> bool;
}
