//! A task store in process memory, for in-process tests of the api and the worker. It
//! applies the same lifecycle rules as the Redis scripts (both come from
//! [`TaskStatus::may_follow`]); records never expire. `set_available(false)` makes every
//! call fail as an unreachable Redis would, to test outage paths.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use inferpush_protocol::{TaskId, TaskRecord, TaskStatus};

use crate::{Admission, Claim, Created, Idempotency, Page, PageBuilder, StoreError, TaskStore, Transition};

#[derive(Default)]
struct State {
    records: HashMap<TaskId, TaskRecord>,
    /// (user, submitted ms, task id): each user's tasks in listing order.
    index: BTreeSet<(String, u64, TaskId)>,
    /// (user, key) → (task, published, request fingerprint).
    idempotency: HashMap<(String, String), (TaskId, bool, String)>,
    in_flight: HashMap<String, u64>,
    /// Result bytes counted per user (records never expire here, so neither do these).
    held: HashMap<String, u64>,
    /// Unsettled publishes: when noted (or last swept), and what they need.
    publishing: HashMap<TaskId, (u64, String)>,
}

/// Task state in a `Mutex`ed map.
pub struct MemoryTaskStore {
    state: Mutex<State>,
    available: AtomicBool,
}

impl Default for MemoryTaskStore {
    fn default() -> Self {
        Self { state: Mutex::default(), available: AtomicBool::new(true) }
    }
}

impl MemoryTaskStore {
    /// An empty, available store.
    pub fn new() -> Self {
        Self::default()
    }

    /// While `false`, every call fails with [`StoreError::Unavailable`].
    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.state.lock().expect("store lock").records.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many unfinished tasks `user_id` holds.
    pub fn in_flight(&self, user_id: &str) -> u64 {
        self.state.lock().expect("store lock").in_flight.get(user_id).copied().unwrap_or(0)
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        if !self.available.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the in-memory store is set unavailable".into()));
        }
        Ok(self.state.lock().expect("store lock"))
    }
}

#[async_trait]
impl TaskStore for MemoryTaskStore {
    async fn is_ready(&self) -> bool {
        self.state().is_ok()
    }

    async fn create(
        &self,
        record: &TaskRecord,
        idempotency: Option<Idempotency<'_>>,
        admission: Admission,
    ) -> Result<Created, StoreError> {
        let mut state = self.state()?;
        let idem = idempotency.map(|i| (record.user_id.clone(), i.key.to_owned()));
        if let Some((task_id, published, request)) = idem.as_ref().and_then(|k| state.idempotency.get(k)) {
            let same_request = idempotency.is_some_and(|i| i.request == request);
            return Ok(Created::Existing { task_id: *task_id, published: *published, same_request });
        }
        let slots = record.slots.max(1);
        if state.in_flight.get(&record.user_id).copied().unwrap_or(0) + slots > admission.max_in_flight {
            return Ok(Created::LimitReached);
        }
        let held = state.held.get(&record.user_id).copied().unwrap_or(0);
        if admission.result_quota > 0 && held + admission.result_bytes > admission.result_quota {
            return Ok(Created::QuotaReached { held, retry_after_secs: 60 });
        }
        let in_flight = state.in_flight.entry(record.user_id.clone()).or_default();
        *in_flight += slots;
        let in_flight = *in_flight;
        if admission.result_quota > 0 {
            *state.held.entry(record.user_id.clone()).or_default() += admission.result_bytes;
        }
        if let Some(idem) = idem {
            let request = idempotency.map(|i| i.request.to_owned()).unwrap_or_default();
            state.idempotency.insert(idem, (record.task_id, false, request));
        }
        state.index.insert((record.user_id.clone(), record.submitted_at_ms, record.task_id));
        state.records.insert(record.task_id, record.clone());
        Ok(Created::New { in_flight })
    }

    async fn confirm_published(
        &self,
        user_id: &str,
        idempotency_key: &str,
        task_id: TaskId,
    ) -> Result<(), StoreError> {
        let mut state = self.state()?;
        if let Some((id, published, _)) =
            state.idempotency.get_mut(&(user_id.to_owned(), idempotency_key.to_owned()))
            && *id == task_id
        {
            *published = true;
        }
        Ok(())
    }

    async fn remove(&self, record: &TaskRecord, idempotency_key: Option<&str>) -> Result<(), StoreError> {
        let mut state = self.state()?;
        let status = state.records.get(&record.task_id).map(|r| r.status);
        if status.is_some_and(|s| s != TaskStatus::Queued) {
            return Ok(());
        }
        if let Some(stored) = state.records.get(&record.task_id) {
            let slots = stored.slots.max(1);
            state.in_flight.entry(record.user_id.clone()).and_modify(|n| *n = n.saturating_sub(slots));
        }
        state.records.remove(&record.task_id);
        state.index.remove(&(record.user_id.clone(), record.submitted_at_ms, record.task_id));
        if let Some(key) = idempotency_key {
            let key = (record.user_id.clone(), key.to_owned());
            if state
                .idempotency
                .get(&key)
                .is_some_and(|(id, published, _)| *id == record.task_id && !published)
            {
                state.idempotency.remove(&key);
            }
        }
        Ok(())
    }

    async fn get(&self, user_id: &str, task_id: TaskId) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.state()?.records.get(&task_id).filter(|record| record.user_id == user_id).cloned())
    }

    async fn list_since(
        &self,
        user_id: &str,
        since_ms: u64,
        after: Option<TaskId>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Page, StoreError> {
        let state = self.state()?;
        let from = (user_id.to_owned(), since_ms, TaskId(uuid::Uuid::nil()));
        let mut page = PageBuilder::new(user_id, limit, max_bytes);
        let entries = state
            .index
            .range(from..)
            .take_while(|(user, _, _)| user == user_id)
            .filter(|(_, _, id)| after.is_none_or(|after| *id > after));
        for (_, _, id) in entries {
            let json = state.records.get(id).map(serde_json::to_string).transpose()?;
            if !page.offer(*id, json.as_deref())? {
                break;
            }
        }
        Ok(page.finish())
    }

    async fn transition(&self, record: &TaskRecord) -> Result<Transition, StoreError> {
        self.write_state(record, Claim::Takeover)
    }

    async fn claim(&self, running: &TaskRecord, claim: Claim) -> Result<Transition, StoreError> {
        self.write_state(running, claim)
    }

    async fn intend_publish(&self, task_id: TaskId, pending: &str, now_ms: u64) -> Result<(), StoreError> {
        self.state()?.publishing.insert(task_id, (now_ms, pending.to_owned()));
        Ok(())
    }

    async fn settle_publish(&self, task_id: TaskId) -> Result<(), StoreError> {
        self.state()?.publishing.remove(&task_id);
        Ok(())
    }

    async fn take_unsettled(
        &self,
        before_ms: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(TaskId, String)>, StoreError> {
        let mut state = self.state()?;
        let mut due: Vec<(u64, TaskId)> = state
            .publishing
            .iter()
            .filter(|(_, (at, _))| *at <= before_ms)
            .map(|(id, (at, _))| (*at, *id))
            .collect();
        due.sort();
        due.truncate(limit.max(1));
        Ok(due
            .into_iter()
            .map(|(_, id)| {
                let entry = state.publishing.get_mut(&id).expect("listed above");
                entry.0 = now_ms;
                (id, entry.1.clone())
            })
            .collect())
    }
}

impl MemoryTaskStore {
    /// A transition; `exclusive` keeps a record already in the new state.
    fn write_state(&self, record: &TaskRecord, claim: Claim) -> Result<Transition, StoreError> {
        let mut state = self.state()?;
        let current = state.records.get(&record.task_id).cloned();
        let status = current.as_ref().map(|r| r.status);
        let own = claim == Claim::FirstAgain && current.as_ref() == Some(record);
        let kept = claim != Claim::Takeover && status == Some(record.status) && !own;
        if !record.status.may_follow(status) || kept {
            return Ok(current.map_or(Transition::Missing, |c| Transition::Kept(Box::new(c))));
        }
        if record.status.is_final() && status.is_some_and(|s| !s.is_final()) {
            let slots = record.slots.max(1);
            state.in_flight.entry(record.user_id.clone()).and_modify(|n| *n = n.saturating_sub(slots));
        }
        if status.is_none() {
            state.index.insert((record.user_id.clone(), record.submitted_at_ms, record.task_id));
        }
        state.records.insert(record.task_id, record.clone());
        Ok(Transition::Applied)
    }
}
