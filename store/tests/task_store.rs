//! The store against the real Redis (`REDIS_URL`, default local), each test under its
//! own key prefix.

use std::time::Duration;

use inferpush_protocol::{TaskEnvelope, TaskId, TaskRecord, TaskStatus};
use inferpush_store::{Created, TaskStore, Transition};

fn store() -> TaskStore {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("storetest-{}", uuid::Uuid::now_v7().simple());
    TaskStore::new(&url, &prefix, Duration::from_secs(120)).unwrap()
}

fn record(user: &str, submitted_at_ms: u64) -> TaskRecord {
    TaskRecord::queued(&TaskEnvelope {
        task_id: TaskId::new_v7(),
        user_id: user.into(),
        model: "echo".into(),
        input: serde_json::json!({}),
        channel: format!("private-inference.{user}"),
        submitted_at_ms,
    })
}

fn with_status(record: &TaskRecord, status: TaskStatus) -> TaskRecord {
    let mut next = record.clone();
    next.status = status;
    next
}

#[tokio::test]
async fn created_task_is_readable_and_moves_forward_only() {
    let store = store();
    let queued = record("alice", 1);
    assert_eq!(store.create(&queued, None, 1000).await.unwrap(), Created::New);
    assert_eq!(store.get(queued.task_id).await.unwrap(), Some(queued.clone()));

    let running = with_status(&queued, TaskStatus::Running);
    assert_eq!(store.transition(&running).await.unwrap(), Transition::Applied);
    let mut done = with_status(&queued, TaskStatus::Succeeded);
    done.output = Some(serde_json::json!({"ok": true}));
    assert_eq!(store.transition(&done).await.unwrap(), Transition::Applied);

    // A redelivery can neither restart nor overwrite a finished task.
    for late in [with_status(&queued, TaskStatus::Running), with_status(&queued, TaskStatus::Failed)] {
        match store.transition(&late).await.unwrap() {
            Transition::Kept(current) => assert_eq!(*current, done),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(store.get(queued.task_id).await.unwrap(), Some(done));
}

#[tokio::test]
async fn same_idempotency_key_returns_the_first_task_and_writes_nothing() {
    let store = store();
    let first = record("alice", 1);
    let second = record("alice", 2);
    assert_eq!(store.create(&first, Some("k1"), 1000).await.unwrap(), Created::New);
    assert_eq!(store.create(&second, Some("k1"), 1000).await.unwrap(), Created::Existing(first.task_id));
    assert_eq!(store.get(second.task_id).await.unwrap(), None);
    // Keys are per user.
    let bobs = record("bob", 3);
    assert_eq!(store.create(&bobs, Some("k1"), 1000).await.unwrap(), Created::New);
}

#[tokio::test]
async fn removing_an_unpublished_task_frees_its_idempotency_key() {
    let store = store();
    let first = record("alice", 1);
    store.create(&first, Some("k"), 1000).await.unwrap();
    store.remove(&first, Some("k")).await.unwrap();
    assert_eq!(store.get(first.task_id).await.unwrap(), None);
    assert!(store.list_since("alice", 0, None, 10).await.unwrap().is_empty());
    assert_eq!(store.create(&record("alice", 2), Some("k"), 1000).await.unwrap(), Created::New);
}

#[tokio::test]
async fn cancel_works_only_before_the_task_starts() {
    let store = store();
    let waiting = record("alice", 1);
    store.create(&waiting, None, 1000).await.unwrap();
    assert_eq!(store.cancel(&waiting).await.unwrap(), Transition::Applied);
    let stored = store.get(waiting.task_id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Cancelled);
    assert_eq!(stored.error.unwrap().code, "cancelled");
    // A worker that picks it up later finds it cancelled and does not run it.
    assert!(matches!(
        store.transition(&with_status(&waiting, TaskStatus::Running)).await.unwrap(),
        Transition::Kept(current) if current.status == TaskStatus::Cancelled
    ));

    let started = record("alice", 2);
    store.create(&started, None, 1000).await.unwrap();
    store.transition(&with_status(&started, TaskStatus::Running)).await.unwrap();
    assert!(matches!(store.cancel(&started).await.unwrap(), Transition::Kept(_)));
    assert_eq!(store.cancel(&record("alice", 3)).await.unwrap(), Transition::Missing);
}

#[tokio::test]
async fn list_since_returns_only_the_users_later_tasks_in_order() {
    let store = store();
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let tasks: Vec<TaskRecord> = (0..5).map(|i| record("alice", base + i)).collect();
    for task in &tasks {
        store.create(task, None, 1000).await.unwrap();
    }
    store.create(&record("bob", base + 2), None, 1000).await.unwrap();
    let all = store.list_since("alice", 0, None, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.task_id).collect::<Vec<_>>(),
        tasks.iter().map(|r| r.task_id).collect::<Vec<_>>()
    );
    let later = store.list_since("alice", 1002, Some(tasks[2].task_id), 100).await.unwrap();
    assert_eq!(later.len(), 2);
    assert_eq!(later[0].task_id, tasks[3].task_id);
    assert_eq!(store.list_since("alice", 0, None, 2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_worker_can_record_a_task_whose_queued_record_was_lost() {
    let store = store();
    let task = record("alice", 5);
    // e.g. Redis restarted without persistence between the api and the worker.
    assert_eq!(
        store.transition(&with_status(&task, TaskStatus::Running)).await.unwrap(),
        Transition::Applied
    );
    assert_eq!(store.list_since("alice", 0, None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_in_flight_cap_refuses_new_tasks_until_one_finishes() {
    let store = store();
    let first = record("alice", 1);
    assert_eq!(store.create(&first, None, 2).await.unwrap(), Created::New);
    assert_eq!(store.create(&record("alice", 2), None, 2).await.unwrap(), Created::New);
    assert_eq!(store.create(&record("alice", 3), None, 2).await.unwrap(), Created::LimitReached);
    assert_eq!(store.create(&record("bob", 3), None, 2).await.unwrap(), Created::New, "caps are per user");
    store.transition(&with_status(&first, TaskStatus::Running)).await.unwrap();
    assert_eq!(
        store.create(&record("alice", 4), None, 2).await.unwrap(),
        Created::LimitReached,
        "running still counts"
    );
    store.transition(&with_status(&first, TaskStatus::Succeeded)).await.unwrap();
    // A redelivery finishing it again frees nothing more.
    store.transition(&with_status(&first, TaskStatus::Failed)).await.unwrap();
    assert_eq!(store.create(&record("alice", 5), None, 2).await.unwrap(), Created::New);
    assert_eq!(store.create(&record("alice", 6), None, 2).await.unwrap(), Created::LimitReached);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let store = TaskStore::new("redis://127.0.0.1:1", "x", Duration::from_secs(60)).unwrap();
    assert!(!store.is_ready().await);
    let result = tokio::time::timeout(Duration::from_secs(20), store.get(TaskId::new_v7())).await.unwrap();
    assert!(result.is_err());
}
