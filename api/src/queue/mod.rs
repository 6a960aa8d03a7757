//! Where accepted tasks go: one small trait ([`TaskQueue`]), with RabbitMQ as the real
//! queue ([`amqp::Broker`]). In-process tests give the api a queue of their own.

pub mod amqp;

use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::TaskEnvelope;

/// The longest the api waits for a publish (connecting included) before it answers 503.
/// A submit's record whose idempotency key is still unconfirmed well past this belongs
/// to a request that died between recording and publishing.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(15);

/// [`TaskQueue::publish`] bounded by [`PUBLISH_TIMEOUT`].
pub async fn publish_within_timeout(
    queue: &dyn TaskQueue,
    task: &TaskEnvelope,
    traceparent: &str,
) -> Result<(), QueueError> {
    tokio::time::timeout(PUBLISH_TIMEOUT, queue.publish(task, traceparent)).await.unwrap_or_else(|_| {
        Err(QueueError::Unreachable(format!("no publisher confirm within {PUBLISH_TIMEOUT:?}")))
    })
}

/// Why a task could not be handed to the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Could not connect, or the connection broke: a passing failure.
    #[error("the message broker is unreachable: {0}")]
    Unreachable(String),
    /// The broker refused to take the message (nack, or no queue for the model).
    #[error("the message broker refused the task: {0}")]
    Refused(String),
}

/// A queue that durably accepts tasks.
#[async_trait]
pub trait TaskQueue: Send + Sync + 'static {
    /// Hands `task` over and returns only once the queue has it safe (publisher confirm),
    /// with `traceparent` travelling beside it.
    async fn publish(&self, task: &TaskEnvelope, traceparent: &str) -> Result<(), QueueError>;

    /// True when a task could be accepted now.
    async fn is_ready(&self) -> bool;
}
