//! The task store: a Redis connection that reconnects by itself, and the operations
//! the api and the worker need.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use inferpush_protocol::{TaskId, TaskRecord, TaskStatus};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::keys::Keys;
use crate::scripts;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable or failed; nothing was changed that the caller relies on.
    #[error("the task store is unavailable: {0}")]
    Unavailable(#[from] redis::RedisError),
    /// A stored record is not valid JSON of the expected shape.
    #[error("a stored task record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// What `create` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// A new queued task was recorded.
    New,
    /// The idempotency key already named this task; nothing was written.
    Existing(TaskId),
    /// The user already has the most unfinished tasks allowed; nothing was written.
    LimitReached,
}

/// What `transition` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// The new state was written.
    Applied,
    /// The rules refused the change; this is what is stored.
    Kept(Box<TaskRecord>),
    /// No record exists (never created, expired, or cancelled too late to matter).
    Missing,
}

/// Task state in Redis.
#[derive(Clone)]
pub struct TaskStore {
    connection: ConnectionManager,
    keys: Keys,
    ttl: Duration,
    create: std::sync::Arc<Script>,
    remove: std::sync::Arc<Script>,
    transition: std::sync::Arc<Script>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl TaskStore {
    /// A store on `url` whose keys start with `prefix`, keeping records for `ttl`.
    /// Connects lazily and reconnects on its own; never blocks at start.
    pub fn new(url: &str, prefix: &str, ttl: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            keys: Keys::new(prefix),
            ttl,
            create: std::sync::Arc::new(scripts::create()),
            remove: std::sync::Arc::new(scripts::remove()),
            transition: std::sync::Arc::new(scripts::transition()),
        })
    }

    /// Key names in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs().max(1)
    }

    /// True when Redis answers a PING.
    pub async fn is_ready(&self) -> bool {
        let mut connection = self.connection.clone();
        redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
    }

    /// Records a queued task, or, when `idempotency_key` was already used by this user,
    /// returns that task's id and writes nothing; refuses when the user already has
    /// `max_in_flight` unfinished tasks.
    pub async fn create(
        &self,
        record: &TaskRecord,
        idempotency_key: Option<&str>,
        max_in_flight: u64,
    ) -> Result<Created, StoreError> {
        let idem = idempotency_key.map(|k| self.keys.idempotency(&record.user_id, k)).unwrap_or_default();
        let oldest = now_ms().saturating_sub(self.ttl.as_millis() as u64);
        let existing: Option<String> = self
            .create
            .key(self.keys.task(record.task_id))
            .key(self.keys.user_tasks(&record.user_id))
            .key(idem)
            .key(self.keys.in_flight(&record.user_id))
            .arg(serde_json::to_string(record)?)
            .arg(record.task_id.to_string())
            .arg(record.submitted_at_ms)
            .arg(self.ttl_secs())
            .arg(oldest)
            .arg(max_in_flight)
            .invoke_async(&mut self.connection.clone())
            .await?;
        match existing.as_deref() {
            None => Ok(Created::New),
            Some("limit") => Ok(Created::LimitReached),
            Some(id) => {
                let id: TaskId =
                    id.parse().map_err(|_| serde_json::Error::io(std::io::Error::other("bad task id")))?;
                Ok(Created::Existing(id))
            }
        }
    }

    /// Removes a queued task that was never published (the broker refused it).
    pub async fn remove(&self, record: &TaskRecord, idempotency_key: Option<&str>) -> Result<(), StoreError> {
        let idem = idempotency_key.map(|k| self.keys.idempotency(&record.user_id, k)).unwrap_or_default();
        let _: i64 = self
            .remove
            .key(self.keys.task(record.task_id))
            .key(self.keys.user_tasks(&record.user_id))
            .key(idem)
            .key(self.keys.in_flight(&record.user_id))
            .arg(record.task_id.to_string())
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    /// The record of `task_id`, if it exists.
    pub async fn get(&self, task_id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let json: Option<String> = self.connection.clone().get(self.keys.task(task_id)).await?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    /// A user's tasks submitted after `since_ms` (and, at that same millisecond, with an
    /// id after `after`), oldest first, at most `limit`.
    pub async fn list_since(
        &self,
        user_id: &str,
        since_ms: u64,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut connection = self.connection.clone();
        // Ask for a few extra to make up for ids at `since_ms` that are not after `after`.
        let ids: Vec<String> = connection
            .zrangebyscore_limit(self.keys.user_tasks(user_id), since_ms, "+inf", 0, (limit + 64) as isize)
            .await?;
        let ids: Vec<TaskId> = ids
            .iter()
            .filter_map(|id| id.parse().ok())
            .filter(|id| after.is_none_or(|after| *id > after))
            .take(limit)
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.keys.task(*id)).collect();
        let records: Vec<Option<String>> = connection.mget(keys).await?;
        records
            .into_iter()
            .flatten()
            .map(|json| serde_json::from_str::<TaskRecord>(&json).map_err(StoreError::from))
            .filter(|r| !matches!(r, Ok(record) if record.user_id != user_id))
            .collect()
    }

    /// Writes `record` if its status may follow the stored one (see the module docs).
    pub async fn transition(&self, record: &TaskRecord) -> Result<Transition, StoreError> {
        let status = serde_json::to_value(record.status)?;
        let answer: String = self
            .transition
            .key(self.keys.task(record.task_id))
            .key(self.keys.user_tasks(&record.user_id))
            .key(self.keys.in_flight(&record.user_id))
            .arg(serde_json::to_string(record)?)
            .arg(status.as_str().unwrap_or_default())
            .arg(self.ttl_secs())
            .arg(record.task_id.to_string())
            .arg(record.submitted_at_ms)
            .invoke_async(&mut self.connection.clone())
            .await?;
        match answer.as_str() {
            "applied" => Ok(Transition::Applied),
            "missing" => Ok(Transition::Missing),
            current => Ok(Transition::Kept(Box::new(serde_json::from_str(current)?))),
        }
    }

    /// Cancels a task that has not started; answers what is stored afterwards.
    pub async fn cancel(&self, record: &TaskRecord) -> Result<Transition, StoreError> {
        let mut cancelled = record.clone();
        cancelled.status = TaskStatus::Cancelled;
        cancelled.finished_at_ms = Some(now_ms());
        cancelled.error = Some(inferpush_protocol::ErrorBody {
            code: "cancelled".into(),
            message: "the task was cancelled by its owner before it started".into(),
        });
        self.transition(&cancelled).await
    }
}
