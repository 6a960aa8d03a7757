//! Workers' heartbeats, in Redis and in memory, through the same scenario: a worker counts
//! for its models while its heartbeat lasts, and not once it withdraws or its TTL ends.

mod support;

use std::sync::Arc;
use std::time::Duration;

use inferpush_protocol::{Clock, ManualClock};
use inferpush_store::{MemoryPresence, Presence, RedisTaskStore};

async fn heartbeats_count_live_workers_per_model(presence: &dyn Presence, clock: &ManualClock) {
    assert!(presence.serving().await.unwrap().is_empty(), "no worker yet");
    presence.announce("w1", &["echo", "all-minilm-l6-v2"], Duration::from_secs(15)).await.unwrap();
    presence.announce("w2", &["echo"], Duration::from_secs(5)).await.unwrap();
    let serving = presence.serving().await.unwrap();
    assert_eq!((serving["echo"], serving["all-minilm-l6-v2"]), (2, 1));
    // w2 misses its renewal: gone when its TTL ends; w1 renews and stays.
    clock.advance(6_000);
    presence.announce("w1", &["echo", "all-minilm-l6-v2"], Duration::from_secs(15)).await.unwrap();
    assert_eq!(presence.serving().await.unwrap()["echo"], 1);
    presence.withdraw("w1").await.unwrap();
    assert!(presence.serving().await.unwrap().is_empty(), "a withdrawn worker counts at once for nothing");
}

#[tokio::test]
async fn redis_presence() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("presencetest-{}", uuid::Uuid::now_v7().simple());
    let clock = Arc::new(ManualClock::at(1_800_000_000_000));
    let store = RedisTaskStore::new(&url, &prefix, Duration::from_secs(60), clock.clone()).unwrap();
    heartbeats_count_live_workers_per_model(&store.presence(), &clock).await;
}

/// The heartbeats share the `{workers}` tag: their transactions and reads keep to one shard.
#[tokio::test]
async fn cluster_presence() {
    let prefix = format!("presencetest-{}", uuid::Uuid::now_v7().simple());
    let clock = Arc::new(ManualClock::at(1_800_000_000_000));
    let store =
        RedisTaskStore::open(support::cluster(), &prefix, Duration::from_secs(60), clock.clone()).unwrap();
    heartbeats_count_live_workers_per_model(&store.presence(), &clock).await;
}

#[tokio::test]
async fn memory_presence() {
    let clock = Arc::new(ManualClock::at(1_800_000_000_000));
    let presence = MemoryPresence::new(clock.clone() as Arc<dyn Clock>);
    heartbeats_count_live_workers_per_model(&presence, &clock).await;
}
