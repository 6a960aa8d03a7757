//! A running generation's text so far and its owner's stop request, in Redis and in memory,
//! through the same scenario: the newest delta of the newest attempt wins, whatever order
//! the writes come in, and a stop request is seen by the next write or poll.

mod support;

use std::sync::Arc;
use std::time::Duration;

use inferpush_protocol::{SystemClock, TaskId, TaskProgress};
use inferpush_store::{MemoryProgress, ProgressStore, RedisTaskStore};

fn progress(attempt: u64, seq: u64, text: &str) -> TaskProgress {
    TaskProgress { attempt, seq, text: text.into(), tokens: seq as usize * 2 }
}

async fn the_newest_text_wins_and_a_stop_is_seen(store: &dyn ProgressStore) {
    let task = TaskId::new_v7();
    assert_eq!(store.progress(task).await.unwrap(), None, "nothing before the first delta");
    assert!(!store.record(task, &progress(10, 1, "Hel")).await.unwrap());
    assert!(!store.record(task, &progress(10, 2, "Hello")).await.unwrap());
    // A late write of an older delta changes nothing.
    store.record(task, &progress(10, 1, "Hel")).await.unwrap();
    assert_eq!(store.progress(task).await.unwrap(), Some(progress(10, 2, "Hello")));
    // A new attempt (the task was redelivered) starts over from seq 1.
    store.record(task, &progress(20, 1, "Hi")).await.unwrap();
    assert_eq!(store.progress(task).await.unwrap(), Some(progress(20, 1, "Hi")));
    store.record(task, &progress(10, 3, "Hello there")).await.unwrap();
    assert_eq!(
        store.progress(task).await.unwrap(),
        Some(progress(20, 1, "Hi")),
        "never back to an old attempt"
    );

    assert!(!store.stop_asked(task).await.unwrap());
    store.ask_stop(task).await.unwrap();
    assert!(store.stop_asked(task).await.unwrap());
    assert!(store.record(task, &progress(20, 2, "Hi!")).await.unwrap(), "the next write hears of it");
    assert!(!store.stop_asked(TaskId::new_v7()).await.unwrap(), "only that task");
}

#[tokio::test]
async fn redis_progress() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("progresstest-{}", uuid::Uuid::now_v7().simple());
    let store = RedisTaskStore::new(&url, &prefix, Duration::from_secs(60), Arc::new(SystemClock)).unwrap();
    the_newest_text_wins_and_a_stop_is_seen(&store.progress()).await;
}

/// A task's text and stop flag share its hash tag: the script keeps to one shard.
#[tokio::test]
async fn cluster_progress() {
    let prefix = format!("progresstest-{}", uuid::Uuid::now_v7().simple());
    let store =
        RedisTaskStore::open(support::cluster(), &prefix, Duration::from_secs(60), Arc::new(SystemClock))
            .unwrap();
    the_newest_text_wins_and_a_stop_is_seen(&store.progress()).await;
}

#[tokio::test]
async fn memory_progress() {
    the_newest_text_wins_and_a_stop_is_seen(&MemoryProgress::default()).await;
}
