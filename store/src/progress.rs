//! What a running generation has written so far, for a client that joins late or lost its
//! connection (`GET /v1/inference/{id}` shows it), and its owner's request to stop it. The
//! worker writes the text at most once per flush of its deltas (not per token), and the
//! same round trip tells it whether a stop was asked.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::{TaskId, TaskProgress};

use crate::StoreError;
use crate::connection::RedisConnection;
use crate::keys::Keys;

/// Running tasks' text so far, and stop requests.
#[async_trait]
pub trait ProgressStore: Send + Sync + 'static {
    /// Records `progress` of `task_id` (a later attempt replaces an earlier one; an older
    /// `seq` of the same attempt never replaces a newer one) and answers whether its owner
    /// asked it to stop.
    async fn record(&self, task_id: TaskId, progress: &TaskProgress) -> Result<bool, StoreError>;

    /// Whether `task_id`'s owner asked it to stop.
    async fn stop_asked(&self, task_id: TaskId) -> Result<bool, StoreError>;

    /// Asks a running `task_id` to stop.
    async fn ask_stop(&self, task_id: TaskId) -> Result<(), StoreError>;

    /// What `task_id` has written so far, if it streams and has begun.
    async fn progress(&self, task_id: TaskId) -> Result<Option<TaskProgress>, StoreError>;
}

/// [`ProgressStore`] in Redis: one JSON value and one flag per task, expiring with its record.
#[derive(Clone)]
pub struct RedisProgress {
    connection: RedisConnection,
    keys: Keys,
    ttl: Duration,
    record: std::sync::Arc<redis::Script>,
}

/// KEYS: progress, stop. ARGV: the progress JSON, its attempt, its seq, TTL in seconds.
/// Keeps the newest attempt's newest seq; answers whether a stop was asked.
const RECORD: &str = r#"
local current = redis.call('GET', KEYS[1])
if current then
  local old = cjson.decode(current)
  local attempt, seq = tonumber(ARGV[2]), tonumber(ARGV[3])
  if old.attempt > attempt or (old.attempt == attempt and old.seq >= seq) then
    return redis.call('EXISTS', KEYS[2])
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
return redis.call('EXISTS', KEYS[2])
"#;

impl RedisProgress {
    pub(crate) fn new(connection: RedisConnection, keys: Keys, ttl: Duration) -> Self {
        Self { connection, keys, ttl, record: std::sync::Arc::new(redis::Script::new(RECORD)) }
    }

    fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs().max(1)
    }
}

#[async_trait]
impl ProgressStore for RedisProgress {
    async fn record(&self, task_id: TaskId, progress: &TaskProgress) -> Result<bool, StoreError> {
        let json = serde_json::to_string(progress)?;
        let asked: i64 = self
            .record
            .key(self.keys.progress(task_id))
            .key(self.keys.stop(task_id))
            .arg(json)
            .arg(progress.attempt)
            .arg(progress.seq)
            .arg(self.ttl_secs())
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(asked == 1)
    }

    async fn stop_asked(&self, task_id: TaskId) -> Result<bool, StoreError> {
        let asked: bool = redis::cmd("EXISTS")
            .arg(self.keys.stop(task_id))
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(asked)
    }

    async fn ask_stop(&self, task_id: TaskId) -> Result<(), StoreError> {
        let _: () = redis::cmd("SET")
            .arg(self.keys.stop(task_id))
            .arg(1)
            .arg("EX")
            .arg(self.ttl_secs())
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    async fn progress(&self, task_id: TaskId) -> Result<Option<TaskProgress>, StoreError> {
        let json: Option<String> = redis::cmd("GET")
            .arg(self.keys.progress(task_id))
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(json.map(|json| serde_json::from_str(&json)).transpose()?)
    }
}

/// [`ProgressStore`] in memory, for tests.
#[derive(Default)]
pub struct MemoryProgress {
    progress: Mutex<HashMap<TaskId, TaskProgress>>,
    stops: Mutex<HashSet<TaskId>>,
}

#[async_trait]
impl ProgressStore for MemoryProgress {
    async fn record(&self, task_id: TaskId, progress: &TaskProgress) -> Result<bool, StoreError> {
        {
            let mut all = self.progress.lock().expect("not poisoned");
            let newer =
                all.get(&task_id).is_none_or(|old| (progress.attempt, progress.seq) > (old.attempt, old.seq));
            if newer {
                all.insert(task_id, progress.clone());
            }
        }
        self.stop_asked(task_id).await
    }

    async fn stop_asked(&self, task_id: TaskId) -> Result<bool, StoreError> {
        Ok(self.stops.lock().expect("not poisoned").contains(&task_id))
    }

    async fn ask_stop(&self, task_id: TaskId) -> Result<(), StoreError> {
        self.stops.lock().expect("not poisoned").insert(task_id);
        Ok(())
    }

    async fn progress(&self, task_id: TaskId) -> Result<Option<TaskProgress>, StoreError> {
        Ok(self.progress.lock().expect("not poisoned").get(&task_id).cloned())
    }
}
