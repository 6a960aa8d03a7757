//! Redis key names, all under one prefix, placed for Redis Cluster by hash tags: every key
//! of one user (records, index, in-flight count, idempotency keys, quota buckets, event
//! log) carries `{user:ID}`, so each script that touches several of them touches one slot
//! and a user's state lives on one shard; a task's progress and stop flag carry
//! `{task:ID}`; the few deployment-wide keys share one tag each (`{publishing}`,
//! `{workers}`). A tag is never empty (an empty one would not count), and a user id with
//! a `}` in it still gives all its keys one tag (the text up to that `}`, the same in each).

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

    /// The prefix every key starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Which key layout the data is in (absent: the flat one of earlier versions).
    pub fn layout(&self) -> String {
        format!("{}:{{layout}}", self.prefix)
    }

    /// The JSON record of a user's task.
    pub fn task(&self, user_id: &str, task_id: TaskId) -> String {
        format!("{}:{{user:{user_id}}}:task:{task_id}", self.prefix)
    }

    /// What a running generation wrote so far (JSON).
    pub fn progress(&self, task_id: TaskId) -> String {
        format!("{}:{{task:{task_id}}}:progress", self.prefix)
    }

    /// Set when a running task's owner asked it to stop.
    pub fn stop(&self, task_id: TaskId) -> String {
        format!("{}:{{task:{task_id}}}:stop", self.prefix)
    }

    /// A user's tasks: a sorted set of task ids scored by submission time (ms).
    pub fn user_tasks(&self, user_id: &str) -> String {
        format!("{}:{{user:{user_id}}}:tasks", self.prefix)
    }

    /// How many of a user's tasks are queued or running.
    pub fn in_flight(&self, user_id: &str) -> String {
        format!("{}:{{user:{user_id}}}:inflight", self.prefix)
    }

    /// Unsettled publishes: task ids scored by when they were noted (or last swept).
    pub fn publishing(&self) -> String {
        format!("{}:{{publishing}}", self.prefix)
    }

    /// What each unsettled publish needs to be published again, by task id.
    pub fn publishing_tasks(&self) -> String {
        format!("{}:{{publishing}}:tasks", self.prefix)
    }

    /// A user's result bytes counted while `bucket` was current.
    pub fn held(&self, user_id: &str, bucket: u64) -> String {
        format!("{}:{{user:{user_id}}}:held:{bucket}", self.prefix)
    }

    /// Live workers: a sorted set of worker ids scored by when their heartbeat ends (ms).
    pub fn workers(&self) -> String {
        format!("{}:{{workers}}", self.prefix)
    }

    /// The models one worker serves (a JSON array), expiring with its heartbeat.
    pub fn worker(&self, worker: &str) -> String {
        format!("{}:{{workers}}:{worker}", self.prefix)
    }

    /// A user's event log (a stream).
    pub fn events(&self, user_id: &str) -> String {
        format!("{}:{{user:{user_id}}}:events", self.prefix)
    }

    /// Marks a user's task's event as logged, holding its id, so a repeat is not logged twice.
    pub fn event_marker(&self, user_id: &str, task_id: TaskId, event: &str) -> String {
        format!("{}:{{user:{user_id}}}:event:{task_id}:{event}", self.prefix)
    }

    /// The Pub/Sub channel a user's events are published on as they are logged.
    pub fn live_channel(&self, user_id: &str) -> String {
        format!("{}:events:{user_id}", self.prefix)
    }

    /// An `Idempotency-Key` of a user, hashed so any header value makes a safe key.
    pub fn idempotency(&self, user_id: &str, key: &str) -> String {
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        format!("{}:{{user:{user_id}}}:idem:{digest}", self.prefix)
    }

    /// Stands for "no idempotency key" in a script's keys: a name in the user's slot that
    /// is never written (a cluster refuses a script whose keys span slots, `""` included).
    pub fn no_idempotency(&self, user_id: &str) -> String {
        format!("{}:{{user:{user_id}}}:idem:none", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_and_idempotency_keys_hashed() {
        let keys = Keys::new("p");
        let id = TaskId::new_v7();
        assert_eq!(keys.task("alice", id), format!("p:{{user:alice}}:task:{id}"));
        assert_eq!(keys.user_tasks("alice"), "p:{user:alice}:tasks");
        assert_eq!(keys.progress(id), format!("p:{{task:{id}}}:progress"));
        let idem = keys.idempotency("alice", "a key with spaces\n");
        assert!(idem.starts_with("p:{user:alice}:idem:"));
        assert_eq!(idem.len(), "p:{user:alice}:idem:".len() + 64);
        assert_ne!(idem, keys.idempotency("bob", "a key with spaces\n"));
    }

    #[test]
    fn every_key_a_script_touches_together_shares_a_cluster_slot() {
        use redis::cluster_routing::Slot;
        let keys = Keys::new("inferpush");
        let id = TaskId::new_v7();
        for user in ["alice", "", "a}b", "{x}", "user:with:colons"] {
            let slot = Slot::for_key(keys.user_tasks(user));
            for key in [
                keys.task(user, id),
                keys.in_flight(user),
                keys.idempotency(user, "k"),
                keys.no_idempotency(user),
                keys.held(user, 7),
                keys.events(user),
                keys.event_marker(user, id, "inference.completed"),
            ] {
                assert_eq!(Slot::for_key(&key), slot, "{key} of user `{user}`");
            }
        }
        assert_eq!(Slot::for_key(keys.progress(id)), Slot::for_key(keys.stop(id)));
        assert_eq!(Slot::for_key(keys.publishing()), Slot::for_key(keys.publishing_tasks()));
        assert_eq!(Slot::for_key(keys.workers()), Slot::for_key(keys.worker("w-1")));
        // Users spread over the slots.
        assert_ne!(Slot::for_key(keys.user_tasks("alice")), Slot::for_key(keys.user_tasks("bob")));
    }
}
