//! The task store in Redis: a connection that reconnects by itself, records as JSON with
//! a TTL, a sorted set per user for listing, and every change one Lua script.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::{Clock, TaskId, TaskRecord};
use redis::{AsyncCommands, Script};

use crate::connection::{RedisConnection, RedisTarget};
use crate::events::RedisEventLog;
use crate::keys::Keys;
use crate::{
    Admission, Claim, Created, Idempotency, Page, PageBuilder, StoreError, TaskStore, Transition, scripts,
};

/// Task state in Redis.
#[derive(Clone)]
pub struct RedisTaskStore {
    connection: RedisConnection,
    keys: Keys,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    create: Arc<Script>,
    remove: Arc<Script>,
    confirm_published: Arc<Script>,
    transition: Arc<Script>,
    take_unsettled: Arc<Script>,
}

impl RedisTaskStore {
    /// A store on the one server at `url` whose keys start with `prefix`, keeping records
    /// for `ttl`. Connects lazily and reconnects on its own; never blocks at start.
    pub fn new(url: &str, prefix: &str, ttl: Duration, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::open(&RedisTarget::single(url), prefix, ttl, clock)
    }

    /// [`Self::new`] on whatever `target` names: one server, a master behind Sentinels, or
    /// a Redis Cluster.
    pub fn open(
        target: &RedisTarget,
        prefix: &str,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            connection: RedisConnection::open(target)?,
            keys: Keys::new(prefix),
            ttl,
            clock,
            create: Arc::new(scripts::create()),
            remove: Arc::new(scripts::remove()),
            confirm_published: Arc::new(scripts::confirm_published()),
            transition: Arc::new(scripts::transition()),
            take_unsettled: Arc::new(scripts::take_unsettled()),
        })
    }

    /// The workers' heartbeats on the same server, under the same prefix.
    pub fn presence(&self) -> crate::RedisPresence {
        crate::RedisPresence::new(self.connection.clone(), self.keys.clone(), self.clock.clone())
    }

    /// Running generations' text so far and stop requests, on the same server, under the
    /// same prefix and TTL.
    pub fn progress(&self) -> crate::RedisProgress {
        crate::RedisProgress::new(self.connection.clone(), self.keys.clone(), self.ttl)
    }

    /// The users' event logs on the same server, under the same prefix and TTL.
    pub fn events(&self) -> RedisEventLog {
        let quota = QuotaBuckets { ttl: self.ttl, clock: self.clock.clone() };
        RedisEventLog::new(self.connection.clone(), self.keys.clone(), self.ttl, quota)
    }

    /// Moves data stored by an earlier version under the flat key names to this version's
    /// (see `migrate.rs`); `None` when there was nothing to do (done before, or a cluster,
    /// which is new with this version).
    pub async fn migrate_layout(&self) -> Result<Option<crate::Migrated>, StoreError> {
        if self.connection.is_cluster() {
            return Ok(None);
        }
        crate::migrate::migrate(&self.connection, &self.keys).await
    }

    /// Key names in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn quota_bucket_ms(&self) -> u64 {
        QuotaBuckets::width_ms(self.ttl)
    }

    fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs().max(1)
    }
}

#[async_trait]
impl TaskStore for RedisTaskStore {
    async fn is_ready(&self) -> bool {
        let mut connection = self.connection.clone();
        redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
    }

    async fn create(
        &self,
        record: &TaskRecord,
        idempotency: Option<Idempotency<'_>>,
        admission: Admission,
    ) -> Result<Created, StoreError> {
        let idem = idempotency.map(|i| self.keys.idempotency(&record.user_id, i.key));
        let now_ms = self.clock.now_ms();
        let oldest = now_ms.saturating_sub(self.ttl.as_millis() as u64);
        let bucket_ms = self.quota_bucket_ms();
        let current = now_ms / bucket_ms;
        let buckets = self.ttl.as_millis() as u64 / bucket_ms + 1;
        let mut script = self.create.prepare_invoke();
        script
            .key(self.keys.task(&record.user_id, record.task_id))
            .key(self.keys.user_tasks(&record.user_id))
            .key(idem.clone().unwrap_or_else(|| self.keys.no_idempotency(&record.user_id)))
            .key(self.keys.in_flight(&record.user_id));
        for bucket in (0..buckets).map(|back| current.saturating_sub(back)) {
            script.key(self.keys.held(&record.user_id, bucket));
        }
        let existing: Option<String> = script
            .arg(serde_json::to_string(record)?)
            .arg(record.task_id.to_string())
            .arg(record.submitted_at_ms)
            .arg(self.ttl_secs())
            .arg(oldest)
            .arg(admission.max_in_flight)
            .arg(idempotency.map(|i| i.request).unwrap_or_default())
            .arg(admission.result_bytes)
            .arg(admission.result_quota)
            .arg(QuotaBuckets::lifetime_secs_of(self.ttl))
            .arg(record.slots.max(1))
            .arg(if idem.is_some() { "1" } else { "0" })
            .invoke_async(&mut self.connection.clone())
            .await?;
        match existing.as_deref() {
            None => Err(StoreError::Corrupt(serde_json::Error::io(std::io::Error::other(
                "the create script answered nothing",
            )))),
            Some(new) if new.starts_with("new ") => {
                // Accepted is a promise: a failover must not lose it.
                self.connection.replicated(&self.keys.task(&record.user_id, record.task_id)).await?;
                Ok(Created::New { in_flight: new["new ".len()..].parse().unwrap_or(1) })
            }
            Some("limit") => Ok(Created::LimitReached),
            Some(quota) if quota.starts_with("quota ") => Ok(Created::QuotaReached {
                held: quota["quota ".len()..].parse().unwrap_or(0),
                retry_after_secs: bucket_ms.div_ceil(1000),
            }),
            Some(held) => {
                let corrupt = || {
                    let error = std::io::Error::other(format!("an idempotency key holds `{held}`"));
                    StoreError::Corrupt(serde_json::Error::io(error))
                };
                let mut fields = held.splitn(3, ' ');
                let (id, published, request) =
                    (fields.next().ok_or_else(corrupt)?, fields.next().ok_or_else(corrupt)?, fields.next());
                Ok(Created::Existing {
                    task_id: id.parse().map_err(|_| corrupt())?,
                    published: published == "1",
                    same_request: request == idempotency.map(|i| i.request),
                })
            }
        }
    }

    async fn confirm_published(
        &self,
        user_id: &str,
        idempotency_key: &str,
        task_id: TaskId,
    ) -> Result<(), StoreError> {
        let _: i64 = self
            .confirm_published
            .key(self.keys.idempotency(user_id, idempotency_key))
            .arg(task_id.to_string())
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    async fn remove(&self, record: &TaskRecord, idempotency_key: Option<&str>) -> Result<(), StoreError> {
        let idem = idempotency_key.map(|k| self.keys.idempotency(&record.user_id, k));
        let _: i64 = self
            .remove
            .key(self.keys.task(&record.user_id, record.task_id))
            .key(self.keys.user_tasks(&record.user_id))
            .key(idem.clone().unwrap_or_else(|| self.keys.no_idempotency(&record.user_id)))
            .key(self.keys.in_flight(&record.user_id))
            .arg(record.task_id.to_string())
            .arg(if idem.is_some() { "1" } else { "0" })
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    async fn get(&self, user_id: &str, task_id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        let json: Option<String> = self.connection.clone().get(self.keys.task(user_id, task_id)).await?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    async fn list_since(
        &self,
        user_id: &str,
        since_ms: u64,
        after: Option<TaskId>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, StoreError> {
        let mut connection = self.connection.clone();
        let index = self.keys.user_tasks(user_id);
        let mut page = PageBuilder::new(user_id, limit, max_bytes);
        let mut expired: Vec<String> = Vec::new();
        // The index in chunks (a few extra for ids at `since_ms` that are not after
        // `after`, and for entries whose records expired), until the page is full.
        let chunk = (limit + 64).min(1000);
        let mut offset = 0;
        'index: loop {
            let ids: Vec<String> = connection
                .zrangebyscore_limit(&index, since_ms, "+inf", offset as isize, chunk as isize)
                .await?;
            offset += ids.len();
            let exhausted = ids.len() < chunk;
            let ids: Vec<TaskId> = ids
                .iter()
                .filter_map(|id| id.parse().ok())
                .filter(|id| after.is_none_or(|after| *id > after))
                .collect();
            if !ids.is_empty() {
                let keys: Vec<String> = ids.iter().map(|id| self.keys.task(user_id, *id)).collect();
                let records: Vec<Option<String>> = connection.mget(keys).await?;
                for (id, json) in ids.iter().zip(records) {
                    if json.is_none() {
                        expired.push(id.to_string());
                    }
                    if !page.offer(*id, json.as_deref())? {
                        break 'index;
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        if !expired.is_empty() {
            // Their records are gone: later listings need not look at them again.
            let pruned: Result<i64, _> = connection.zrem(&index, expired).await;
            if let Err(error) = pruned {
                tracing::debug!(%error, "could not prune expired entries from a task index");
            }
        }
        Ok(page.finish())
    }

    async fn transition(&self, record: &TaskRecord) -> Result<Transition, StoreError> {
        self.write_state(record, Claim::Takeover).await
    }

    async fn claim(&self, running: &TaskRecord, claim: Claim) -> Result<Transition, StoreError> {
        self.write_state(running, claim).await
    }

    async fn intend_publish(&self, task_id: TaskId, pending: &str, now_ms: u64) -> Result<(), StoreError> {
        let id = task_id.to_string();
        redis::pipe()
            .atomic()
            .hset(self.keys.publishing_tasks(), &id, pending)
            .ignore()
            .zadd(self.keys.publishing(), &id, now_ms)
            .ignore()
            .query_async::<()>(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    async fn settle_publish(&self, task_id: TaskId) -> Result<(), StoreError> {
        let id = task_id.to_string();
        redis::pipe()
            .atomic()
            .zrem(self.keys.publishing(), &id)
            .ignore()
            .hdel(self.keys.publishing_tasks(), &id)
            .ignore()
            .query_async::<()>(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    async fn take_unsettled(
        &self,
        before_ms: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(TaskId, String)>, StoreError> {
        let taken: Vec<String> = self
            .take_unsettled
            .key(self.keys.publishing())
            .key(self.keys.publishing_tasks())
            .arg(before_ms)
            .arg(now_ms)
            .arg(limit.max(1))
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(taken.chunks_exact(2).filter_map(|pair| Some((pair[0].parse().ok()?, pair[1].clone()))).collect())
    }
}

impl RedisTaskStore {
    /// The transition script; `exclusive` keeps a record already in the new state.
    async fn write_state(&self, record: &TaskRecord, claim: Claim) -> Result<Transition, StoreError> {
        let key = self.keys.task(&record.user_id, record.task_id);
        let answer: String = self
            .transition
            .key(&key)
            .key(self.keys.user_tasks(&record.user_id))
            .key(self.keys.in_flight(&record.user_id))
            .arg(serde_json::to_string(record)?)
            .arg(record.status.as_str())
            .arg(self.ttl_secs())
            .arg(record.task_id.to_string())
            .arg(record.submitted_at_ms)
            .arg(claim.mode())
            .invoke_async(&mut self.connection.clone())
            .await?;
        match answer.as_str() {
            "applied" => {
                if record.status.is_final() {
                    // The result is stored: a failover must not lose it.
                    self.connection.replicated(&key).await?;
                }
                Ok(Transition::Applied)
            }
            "missing" => Ok(Transition::Missing),
            current => Ok(Transition::Kept(Box::new(serde_json::from_str(current)?))),
        }
    }
}

/// The result quota's time buckets: what a user holds is the sum of the buckets of one
/// result TTL, each counting the bytes stored while it was current.
#[derive(Clone)]
pub(crate) struct QuotaBuckets {
    pub(crate) ttl: Duration,
    pub(crate) clock: Arc<dyn Clock>,
}

impl QuotaBuckets {
    /// The width of one bucket: a 24th of the TTL, at least a second (so a quota frees
    /// up gradually as the oldest bucket expires).
    pub(crate) fn width_ms(ttl: Duration) -> u64 {
        (ttl.as_millis() as u64 / 24).max(1000)
    }

    /// How long a bucket is kept: the TTL and its own width.
    pub(crate) fn lifetime_secs_of(ttl: Duration) -> u64 {
        ttl.as_secs().max(1) + Self::width_ms(ttl).div_ceil(1000)
    }

    /// The current bucket's number.
    pub(crate) fn current(&self) -> u64 {
        self.clock.now_ms() / Self::width_ms(self.ttl)
    }

    pub(crate) fn lifetime_secs(&self) -> u64 {
        Self::lifetime_secs_of(self.ttl)
    }
}
