//! Both event logs through the same scenarios: the real Redis (`REDIS_URL`, default
//! local; and a Sentinel's master and a Redis Cluster, see `support/`) under its own key
//! prefix, and the in-memory one the in-process tests use.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use inferpush_protocol::{SystemClock, TaskId};
use inferpush_store::events::{Live, Start};
use inferpush_store::{EventLog, MemoryEventLog, RedisTarget, RedisTaskStore};

fn redis() -> impl EventLog {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("eventtest-{}", uuid::Uuid::now_v7().simple());
    RedisTaskStore::new(&url, &prefix, Duration::from_secs(120), Arc::new(SystemClock)).unwrap().events()
}

/// The next event of a live feed, skipping gap notices.
async fn next_event(
    feed: &mut inferpush_store::events::LiveFeed,
) -> Arc<inferpush_store::events::LoggedEvent> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), feed.next()).await.expect("a live event in time") {
            Some(Live::Event(event)) => return event,
            Some(Live::Gap) => continue,
            None => panic!("the feed ended"),
        }
    }
}

async fn an_event_is_logged_once_read_by_id_and_published_live(log: &dyn EventLog) {
    let mut feed = log.live();
    // A Redis subscription is in place once it reports its first gap.
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), feed.next()).await.unwrap(), Some(Live::Gap));
    let (task, other) = (TaskId::new_v7(), TaskId::new_v7());
    let started = log.append("alice", task, "inference.started", r#"{"s":1}"#).await.unwrap();
    let again = log.append("alice", task, "inference.started", r#"{"s":1}"#).await.unwrap();
    assert_eq!(started, again, "a repeat is the same entry");
    let done = log.append("alice", task, "inference.completed", r#"{"s":2}"#).await.unwrap();
    log.append("bob", other, "inference.completed", "{}").await.unwrap();
    assert!(done > started);

    let all = log.read("alice", Start::Since(0), 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["inference.started", "inference.completed"]
    );
    assert!(all.iter().all(|e| e.task_id == task && e.user_id == "alice"));
    let missed = log.read("alice", Start::After(started), 100).await.unwrap();
    assert_eq!(missed.len(), 1);
    assert_eq!((missed[0].id, missed[0].data.as_str()), (done, r#"{"s":2}"#));
    assert!(log.read("alice", Start::After(done), 100).await.unwrap().is_empty());
    assert_eq!(log.read("alice", Start::Since(0), 1).await.unwrap().len(), 1, "limit");

    let live: Vec<_> =
        [next_event(&mut feed).await, next_event(&mut feed).await, next_event(&mut feed).await]
            .into_iter()
            .map(|e| (e.user_id.clone(), e.event.clone(), e.id))
            .collect();
    assert_eq!(
        live,
        [
            ("alice".into(), "inference.started".into(), started),
            ("alice".into(), "inference.completed".into(), done),
            ("bob".into(), "inference.completed".into(), live[2].2),
        ],
        "each append once, in order, the repeat not published again"
    );
}

#[tokio::test]
async fn redis_log() {
    an_event_is_logged_once_read_by_id_and_published_live(&redis()).await;
}

fn on(target: &RedisTarget) -> impl EventLog {
    let prefix = format!("eventtest-{}", uuid::Uuid::now_v7().simple());
    RedisTaskStore::open(target, &prefix, Duration::from_secs(120), Arc::new(SystemClock)).unwrap().events()
}

/// alice's and bob's logs sit on different shards; the one live subscription hears both.
#[tokio::test]
async fn cluster_log() {
    an_event_is_logged_once_read_by_id_and_published_live(&on(support::cluster())).await;
}

#[tokio::test]
async fn sentinel_log() {
    an_event_is_logged_once_read_by_id_and_published_live(&on(support::sentinel())).await;
}

#[tokio::test]
async fn memory_log() {
    an_event_is_logged_once_read_by_id_and_published_live(&MemoryEventLog::default()).await;
}

fn redis_store(ttl: Duration) -> RedisTaskStore {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("eventtest-{}", uuid::Uuid::now_v7().simple());
    RedisTaskStore::new(&url, &prefix, ttl, Arc::new(SystemClock)).unwrap()
}

/// An active user's log ages out like their results: each append trims what is older
/// than the result TTL, though the appends keep the stream's own expiry fresh.
#[tokio::test]
async fn an_active_users_log_is_trimmed_to_the_result_ttl() {
    let log = redis_store(Duration::from_secs(1)).events();
    let old = log.append("alice", TaskId::new_v7(), "inference.started", "{}").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let new = log.append("alice", TaskId::new_v7(), "inference.started", "{}").await.unwrap();
    let held: Vec<_> =
        log.read("alice", Start::Since(0), 100).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(held, [new], "{old} is past the TTL and trimmed");
}

/// What a user's log holds counts against their result quota, like their results.
#[tokio::test]
async fn what_the_log_holds_counts_against_the_result_quota() {
    use inferpush_protocol::{InferenceChannel, TaskEnvelope, TaskRecord};
    use inferpush_store::{Admission, Created, TaskStore};
    let store = redis_store(Duration::from_secs(120));
    let record = |user: &str| {
        let channel = InferenceChannel::private(user).unwrap();
        TaskRecord::queued(&TaskEnvelope::new(user, "echo", serde_json::json!({}), channel, 1))
    };
    let admit = Admission { max_in_flight: 100, result_bytes: 500, result_quota: 1000 };
    let data = "x".repeat(600);
    store.events().append("alice", TaskId::new_v7(), "inference.completed", &data).await.unwrap();
    match store.create(&record("alice"), None, admit).await.unwrap() {
        Created::QuotaReached { held, .. } => {
            assert_eq!(held, 600 + inferpush_store::events::ENTRY_OVERHEAD_BYTES as u64)
        }
        other => panic!("the log's bytes were not counted: {other:?}"),
    }
    assert!(
        matches!(store.create(&record("bob"), None, admit).await.unwrap(), Created::New { .. }),
        "per user"
    );
}
