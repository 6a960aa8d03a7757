//! Redis key names, all under one prefix.

use inferpush_protocol::TaskId;
use sha2::{Digest, Sha256};

/// The key names of one deployment.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// The JSON record of a task.
    pub fn task(&self, task_id: TaskId) -> String {
        format!("{}:task:{task_id}", self.prefix)
    }

    /// What a running generation wrote so far (JSON).
    pub fn progress(&self, task_id: TaskId) -> String {
        format!("{}:task:{task_id}:progress", self.prefix)
    }

    /// Set when a running task's owner asked it to stop.
    pub fn stop(&self, task_id: TaskId) -> String {
        format!("{}:task:{task_id}:stop", self.prefix)
    }

    /// A user's tasks: a sorted set of task ids scored by submission time (ms).
    pub fn user_tasks(&self, user_id: &str) -> String {
        format!("{}:user:{user_id}:tasks", self.prefix)
    }

    /// How many of a user's tasks are queued or running.
    pub fn in_flight(&self, user_id: &str) -> String {
        format!("{}:user:{user_id}:inflight", self.prefix)
    }

    /// Unsettled publishes: task ids scored by when they were noted (or last swept).
    pub fn publishing(&self) -> String {
        format!("{}:publishing", self.prefix)
    }

    /// What each unsettled publish needs to be published again, by task id.
    pub fn publishing_tasks(&self) -> String {
        format!("{}:publishing:tasks", self.prefix)
    }

    /// A user's result bytes counted while `bucket` was current.
    pub fn held(&self, user_id: &str, bucket: u64) -> String {
        format!("{}:user:{user_id}:held:{bucket}", self.prefix)
    }

    /// Live workers: a sorted set of worker ids scored by when their heartbeat ends (ms).
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    /// The models one worker serves (a JSON array), expiring with its heartbeat.
    pub fn worker(&self, worker: &str) -> String {
        format!("{}:worker:{worker}", self.prefix)
    }

    /// A user's event log (a stream).
    pub fn events(&self, user_id: &str) -> String {
        format!("{}:user:{user_id}:events", self.prefix)
    }

    /// Marks a task's event as logged, holding its id, so a repeat is not logged twice.
    pub fn event_marker(&self, task_id: TaskId, event: &str) -> String {
        format!("{}:event:{task_id}:{event}", self.prefix)
    }

    /// The Pub/Sub channel a user's events are published on as they are logged.
    pub fn live_channel(&self, user_id: &str) -> String {
        format!("{}:events:{user_id}", self.prefix)
    }

    /// An `Idempotency-Key` of a user, hashed so any header value makes a safe key.
    pub fn idempotency(&self, user_id: &str, key: &str) -> String {
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        format!("{}:idem:{user_id}:{digest}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_and_idempotency_keys_hashed() {
        let keys = Keys::new("p");
        let id = TaskId::new_v7();
        assert_eq!(keys.task(id), format!("p:task:{id}"));
        assert_eq!(keys.user_tasks("alice"), "p:user:alice:tasks");
        let idem = keys.idempotency("alice", "a key with spaces\n");
        assert!(idem.starts_with("p:idem:alice:"));
        assert_eq!(idem.len(), "p:idem:alice:".len() + 64);
        assert_ne!(idem, keys.idempotency("bob", "a key with spaces\n"));
    }
}
