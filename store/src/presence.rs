//! Which workers are alive and which models each serves: every worker renews a heartbeat
//! with a TTL while it consumes, so a worker that dies drops out when its TTL ends and
//! one that stops gracefully drops out at once. `GET /v1/models` counts them per model.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::Clock;
use redis::AsyncCommands;

use crate::StoreError;
use crate::connection::RedisConnection;
use crate::keys::Keys;

/// Workers' heartbeats.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// `worker` serves `models` for the next `ttl` (renewed well before it ends).
    async fn announce(&self, worker: &str, models: &[&str], ttl: Duration) -> Result<(), StoreError>;
    /// `worker` serves nothing any more (it is stopping).
    async fn withdraw(&self, worker: &str) -> Result<(), StoreError>;
    /// How many live workers serve each model (models no live worker serves are absent).
    async fn serving(&self) -> Result<HashMap<String, u32>, StoreError>;
}

/// Heartbeats in Redis: a sorted set of worker ids scored by when their heartbeat ends,
/// and per worker the models it serves, expiring with it.
#[derive(Clone)]
pub struct RedisPresence {
    connection: RedisConnection,
    keys: Keys,
    clock: Arc<dyn Clock>,
}

impl RedisPresence {
    pub(crate) fn new(connection: RedisConnection, keys: Keys, clock: Arc<dyn Clock>) -> Self {
        Self { connection, keys, clock }
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn announce(&self, worker: &str, models: &[&str], ttl: Duration) -> Result<(), StoreError> {
        let ends_ms = self.clock.now_ms() + ttl.as_millis() as u64;
        let models = serde_json::to_string(models)?;
        let mut connection = self.connection.clone();
        redis::pipe()
            .atomic()
            .zadd(self.keys.workers(), worker, ends_ms)
            .ignore()
            .pset_ex(self.keys.worker(worker), models, ttl.as_millis() as u64)
            .ignore()
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    async fn withdraw(&self, worker: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::pipe()
            .atomic()
            .zrem(self.keys.workers(), worker)
            .ignore()
            .del(self.keys.worker(worker))
            .ignore()
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    async fn serving(&self) -> Result<HashMap<String, u32>, StoreError> {
        let mut connection = self.connection.clone();
        let now = self.clock.now_ms();
        let live: Vec<String> = connection.zrangebyscore(self.keys.workers(), now, "+inf").await?;
        let _: () = connection.zrembyscore(self.keys.workers(), "-inf", format!("({now}")).await?;
        if live.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = live.iter().map(|worker| self.keys.worker(worker)).collect();
        let served: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut connection).await?;
        let mut counts = HashMap::new();
        for models in served.into_iter().flatten() {
            for model in serde_json::from_str::<Vec<String>>(&models)? {
                *counts.entry(model).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

/// Heartbeats in memory, for in-process tests.
pub struct MemoryPresence {
    workers: Mutex<HashMap<String, (u64, Vec<String>)>>,
    clock: Arc<dyn Clock>,
}

impl MemoryPresence {
    /// No worker yet, on `clock`'s time.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { workers: Mutex::default(), clock }
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn announce(&self, worker: &str, models: &[&str], ttl: Duration) -> Result<(), StoreError> {
        let ends_ms = self.clock.now_ms() + ttl.as_millis() as u64;
        let models = models.iter().map(|m| (*m).to_owned()).collect();
        self.workers.lock().expect("presence lock").insert(worker.to_owned(), (ends_ms, models));
        Ok(())
    }

    async fn withdraw(&self, worker: &str) -> Result<(), StoreError> {
        self.workers.lock().expect("presence lock").remove(worker);
        Ok(())
    }

    async fn serving(&self) -> Result<HashMap<String, u32>, StoreError> {
        let now = self.clock.now_ms();
        let mut workers = self.workers.lock().expect("presence lock");
        workers.retain(|_, (ends_ms, _)| *ends_ms >= now);
        let mut counts = HashMap::new();
        for model in workers.values().flat_map(|(_, models)| models) {
            *counts.entry(model.clone()).or_insert(0) += 1;
        }
        Ok(counts)
    }
}
