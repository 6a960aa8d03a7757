//! Delivery: how a task's state reaches its owner once it is safe in the store. Each
//! target is an [`EventSink`]; Pusher through Soketi ([`pusher::PusherSink`]) is the one
//! today. A sink gets the stored record and makes its own event from it, so the record is
//! the single source of what is announced.

pub mod publisher;
pub mod pusher;

use async_trait::async_trait;
use inferpush_protocol::TaskRecord;

/// Why an event was not delivered.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    /// The target refused the event itself (for Soketi, a 4xx other than 429), or it can
    /// never be sent: retrying cannot help. The result stays retrievable by GET.
    #[error("the event was refused: {0}")]
    Rejected(String),
    /// The worker is stopping and gave up waiting for the target.
    #[error("gave up pushing: the worker is stopping")]
    Aborted,
}

/// Somewhere a task's events go.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Announces `record`'s state (started, completed or failed) to its owner, retrying
    /// passing failures until delivered, refused, or aborted.
    async fn deliver(&self, record: &TaskRecord) -> Result<(), PushError>;
}
