//! Which models a live worker serves, from the workers' heartbeats in Redis: read afresh
//! by `GET /v1/models`, and kept as a snapshot (renewed every second) that a submit's
//! answer reads without a round trip (`model_ready`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use inferpush_store::Presence;

/// How often the snapshot is renewed.
const REFRESH: Duration = Duration::from_secs(1);
/// The longest a read of the heartbeats may take before the last snapshot is used.
const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Live workers per model.
pub struct Serving {
    presence: Arc<dyn Presence>,
    snapshot: RwLock<Option<HashMap<String, u32>>>,
}

impl Serving {
    /// Nothing known yet.
    pub fn new(presence: Arc<dyn Presence>) -> Self {
        Self { presence, snapshot: RwLock::new(None) }
    }

    /// Reads the heartbeats now; on failure, the last snapshot (None: never read).
    pub async fn refresh(&self) -> Option<HashMap<String, u32>> {
        match tokio::time::timeout(READ_TIMEOUT, self.presence.serving()).await {
            Ok(Ok(counts)) => {
                *self.snapshot.write().expect("serving lock") = Some(counts.clone());
                Some(counts)
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "could not read the workers' heartbeats");
                self.snapshot()
            }
            Err(_) => self.snapshot(),
        }
    }

    /// The last snapshot read.
    pub fn snapshot(&self) -> Option<HashMap<String, u32>> {
        self.snapshot.read().expect("serving lock").clone()
    }

    /// Live workers serving `model` as of the last snapshot (None: not known).
    pub fn workers(&self, model: &str) -> Option<u32> {
        self.snapshot
            .read()
            .expect("serving lock")
            .as_ref()
            .map(|counts| counts.get(model).copied().unwrap_or(0))
    }

    /// Renews the snapshot every second for as long as the process runs.
    pub fn keep_fresh(self: &Arc<Self>) {
        let serving = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(serving) = serving.upgrade() {
                serving.refresh().await;
                drop(serving);
                tokio::time::sleep(REFRESH).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use inferpush_protocol::ManualClock;
    use inferpush_store::MemoryPresence;

    use super::*;

    #[tokio::test]
    async fn the_snapshot_follows_the_heartbeats_and_is_unknown_until_read() {
        let presence = Arc::new(MemoryPresence::new(Arc::new(ManualClock::at(1_000))));
        let serving = Serving::new(presence.clone());
        assert_eq!(serving.workers("echo"), None, "not read yet");
        presence.announce("w1", &["echo"], Duration::from_secs(15)).await.unwrap();
        assert_eq!(serving.refresh().await.unwrap()["echo"], 1);
        assert_eq!((serving.workers("echo"), serving.workers("all-minilm-l6-v2")), (Some(1), Some(0)));
    }
}
