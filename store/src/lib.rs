//! Task state and results, behind one small trait ([`TaskStore`]) with two
//! implementations: [`RedisTaskStore`], the real one, where every change is one Lua
//! script generated from the lifecycle's rules, and [`MemoryTaskStore`], a process-local
//! one for in-process tests of the api and the worker. Both apply
//! [`TaskStatus::may_follow`](inferpush_protocol::TaskStatus::may_follow), so a state
//! only ever advances and a redelivered task can never overwrite a finished one.

mod connection;
pub mod events;
mod keys;
mod memory;
mod memory_events;
mod migrate;
mod page;
mod presence;
mod progress;
mod redis_store;
mod scripts;

use async_trait::async_trait;
use inferpush_protocol::{TaskId, TaskRecord};

pub use connection::{Durability, RedisConnection, RedisTarget};
pub use events::{EventLog, RedisEventLog};
pub use keys::Keys;
pub use memory::MemoryTaskStore;
pub use memory_events::MemoryEventLog;
pub use migrate::{LAYOUT, Migrated};
pub(crate) use page::PageBuilder;
pub use page::{MAX_EXAMINED_PER_PAGE, Page};
pub use presence::{MemoryPresence, Presence, RedisPresence};
pub use progress::{MemoryProgress, ProgressStore, RedisProgress};
pub use redis_store::RedisTaskStore;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store is unreachable or failed; nothing was changed that the caller relies on.
    #[error("the task store is unavailable: {0}")]
    Unavailable(String),
    /// A stored record is not valid JSON of the expected shape.
    #[error("a stored task record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

/// What `create` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new queued task was recorded.
    New {
        /// The in-flight slots of the user's unfinished tasks now, this one's included (a
        /// task takes one, a long generation more).
        in_flight: u64,
    },
    /// The idempotency key already named this task; nothing was written. `published` is
    /// false until [`TaskStore::confirm_published`] ran for it: the request that created
    /// it may still be publishing, or may have died before it could.
    Existing {
        /// The task the key names.
        task_id: TaskId,
        /// Whether the queue was known to hold it.
        published: bool,
        /// Whether the request that took the key had the same fingerprint as this one.
        same_request: bool,
    },
    /// The user already has the most unfinished tasks allowed; nothing was written.
    LimitReached,
    /// The user's results kept over the result TTL would pass their quota; nothing was
    /// written.
    QuotaReached {
        /// About how many result bytes the user holds now.
        held: u64,
        /// When some of them will have expired, at the earliest.
        retry_after_secs: u64,
    },
}

/// What a new task may take of its user's allowances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Most in-flight slots the user's unfinished (queued or running) tasks may take.
    pub max_in_flight: u64,
    /// About how many bytes this task's result will hold.
    pub result_bytes: u64,
    /// Most result bytes the user may hold over one result TTL (0: no quota).
    pub result_quota: u64,
}

impl Admission {
    /// Only the in-flight cap, no result quota.
    pub fn in_flight(max_in_flight: u64) -> Self {
        Self { max_in_flight, result_bytes: 0, result_quota: 0 }
    }
}

/// An `Idempotency-Key` of a submit, with the fingerprint of the request that carries it
/// (a replay of the key with another request is refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotency<'a> {
    /// The key, as the client sent it.
    pub key: &'a str,
    /// A digest of what the request asks for; equal requests have equal fingerprints.
    pub request: &'a str,
}

/// How a worker claims a task it was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A first delivery: a task already running is another copy's (the api published it
    /// again), so it is kept.
    First,
    /// The same first claim tried again after its answer was lost (the store went away
    /// mid-reply): a running record equal to this one is this claim's own.
    FirstAgain,
    /// A redelivery: takes the task over from a worker that died.
    Takeover,
}

impl Claim {
    /// The mode the stores' scripts take: `0` takes over, `1` keeps a running task, `2`
    /// keeps one unless it is this very record.
    pub(crate) fn mode(self) -> &'static str {
        match self {
            Claim::Takeover => "0",
            Claim::First => "1",
            Claim::FirstAgain => "2",
        }
    }
}

/// What `transition` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The new state was written.
    Applied,
    /// The rules refused the change; this is what is stored.
    Kept(Box<TaskRecord>),
    /// No record exists and the new state may not start one (a cancel of an unknown task).
    Missing,
}

/// Where task state lives: what the api and the worker need of it.
#[async_trait]
pub trait TaskStore: Send + Sync + 'static {
    /// True when the store answers.
    async fn is_ready(&self) -> bool;

    /// Records a queued task, or, when the idempotency key was already used by this user,
    /// returns that task's id and writes nothing; refuses when the user already has their
    /// most unfinished tasks, or when this task's result would pass their quota of result
    /// bytes held over one result TTL (each task counts its estimate when accepted).
    async fn create(
        &self,
        record: &TaskRecord,
        idempotency: Option<Idempotency<'_>>,
        admission: Admission,
    ) -> Result<Created, StoreError>;

    /// Marks the task that `idempotency_key` of `user_id` names as safely in the queue, so
    /// a replay of the key answers it as it is instead of publishing it again.
    async fn confirm_published(
        &self,
        user_id: &str,
        idempotency_key: &str,
        task_id: TaskId,
    ) -> Result<(), StoreError>;

    /// Removes a queued task that was never published (the broker refused it), with its
    /// idempotency key and in-flight slot: nothing half-written remains.
    async fn remove(&self, record: &TaskRecord, idempotency_key: Option<&str>) -> Result<(), StoreError>;

    /// The record of `user_id`'s task `task_id`, if it exists (another user's task of that
    /// id is not theirs to read, and is not found).
    async fn get(&self, user_id: &str, task_id: TaskId) -> Result<Option<TaskRecord>, StoreError>;

    /// A user's tasks submitted at or after `since_ms` (and, at that same millisecond,
    /// with an id after `after`), oldest first: at most `limit`, and no more than
    /// `max_bytes` of records (always at least one). Tasks whose records expired are
    /// skipped, never counted, and the page says whether more follow.
    async fn list_since(
        &self,
        user_id: &str,
        since_ms: u64,
        after: Option<TaskId>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, StoreError>;

    /// Writes `record` if its status may follow the stored one; a task leaving queued or
    /// running for a final state frees one of its user's in-flight slots.
    async fn transition(&self, record: &TaskRecord) -> Result<Transition, StoreError>;

    /// A worker's claim of a task it was handed: [`Self::transition`] to `running`, except
    /// that on a first delivery a task already running is kept (another copy of it runs;
    /// a redelivery takes over from a worker that died), and that a first claim tried
    /// again finds its own record as its own. One round trip instead of a read and a write.
    async fn claim(&self, running: &TaskRecord, claim: Claim) -> Result<Transition, StoreError>;

    /// Notes, before its record is created, that `task_id` is being published, with what
    /// a sweep needs to publish it again (`pending`); until settled, any api replica may
    /// finish the job of one that died ([`Self::take_unsettled`]).
    async fn intend_publish(&self, task_id: TaskId, pending: &str, now_ms: u64) -> Result<(), StoreError>;

    /// The publish of `task_id` is settled (confirmed, refused, or given up).
    async fn settle_publish(&self, task_id: TaskId) -> Result<(), StoreError>;

    /// Publishes noted at or before `before_ms` and still unsettled, at most `limit`, each
    /// with its `pending`; each is leased to the caller (noted again at `now_ms`), so that
    /// concurrent sweepers take different ones.
    async fn take_unsettled(
        &self,
        before_ms: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(TaskId, String)>, StoreError>;
}
