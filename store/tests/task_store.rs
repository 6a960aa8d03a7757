//! Both stores through the same scenarios: the real Redis in each of its three shapes (one
//! server, `REDIS_URL`, default local; a master behind a Sentinel; a Redis Cluster of
//! three primaries; the last two started by the tests, see `support/`), each test under
//! its own key prefix, and the in-memory one the in-process tests use. Passing the same
//! scenarios, including every pair of states, is what shows the Lua scripts and the memory
//! store apply the one lifecycle of `inferpush_protocol`, and that every script keeps to
//! one cluster slot.

mod support;

use std::sync::Arc;
use std::time::Duration;

use inferpush_protocol::{InferenceChannel, SystemClock, TaskEnvelope, TaskId, TaskRecord, TaskStatus};
use inferpush_store::{
    Admission, Claim, Created, Idempotency, MemoryTaskStore, RedisTarget, RedisTaskStore, TaskStore,
    Transition,
};

fn prefix() -> String {
    format!("storetest-{}", uuid::Uuid::now_v7().simple())
}

fn redis() -> RedisTaskStore {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    RedisTaskStore::new(&url, &prefix(), Duration::from_secs(120), Arc::new(SystemClock)).unwrap()
}

fn on(target: &RedisTarget) -> RedisTaskStore {
    RedisTaskStore::open(target, &prefix(), Duration::from_secs(120), Arc::new(SystemClock)).unwrap()
}

/// Runs `scenario` against Redis (one server, Sentinel, Cluster) and against the memory
/// store, as four tests.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod redis_store {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(&super::redis()).await;
            })*
        }
        mod sentinel_store {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(&super::on(super::support::sentinel())).await;
            })*
        }
        mod cluster_store {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(&super::on(super::support::cluster())).await;
            })*
        }
        mod memory_store {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(&inferpush_store::MemoryTaskStore::new()).await;
            })*
        }
    };
}

on_both_stores!(
    created_task_is_readable_and_moves_forward_only,
    same_idempotency_key_returns_the_first_task_and_writes_nothing,
    removing_an_unpublished_task_frees_its_idempotency_key,
    a_cancel_ends_a_queued_task_and_a_stopped_one_ends_a_running_task,
    list_since_returns_only_the_users_later_tasks_in_order,
    a_worker_can_record_a_task_whose_queued_record_was_lost,
    the_in_flight_cap_refuses_new_tasks_until_one_finishes,
    a_long_generation_takes_its_slots_until_it_ends_or_is_removed,
    the_result_quota_refuses_a_task_whose_result_would_pass_it,
    every_move_is_applied_exactly_when_the_lifecycle_allows_it,
    a_first_claim_leaves_a_running_task_to_its_worker_and_a_redelivery_takes_it_over,
    unsettled_publishes_are_leased_one_sweeper_at_a_time_until_settled,
);

fn record(user: &str, submitted_at_ms: u64) -> TaskRecord {
    TaskRecord::queued(&TaskEnvelope::new(
        user,
        "echo",
        serde_json::json!({}),
        InferenceChannel::private(user).unwrap(),
        submitted_at_ms,
    ))
}

fn with_status(record: &TaskRecord, status: TaskStatus) -> TaskRecord {
    let mut next = record.clone();
    next.status = status;
    next
}

async fn created_task_is_readable_and_moves_forward_only(store: &dyn TaskStore) {
    let queued = record("alice", 1);
    assert_eq!(
        store.create(&queued, None, Admission::in_flight(1000)).await.unwrap(),
        Created::New { in_flight: 1 }
    );
    assert_eq!(store.get(&queued.user_id, queued.task_id).await.unwrap(), Some(queued.clone()));

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
    assert_eq!(store.get(&queued.user_id, queued.task_id).await.unwrap(), Some(done));
}

fn key<'a>(key: &'a str, request: &'a str) -> Option<Idempotency<'a>> {
    Some(Idempotency { key, request })
}

async fn same_idempotency_key_returns_the_first_task_and_writes_nothing(store: &dyn TaskStore) {
    let first = record("alice", 1);
    let second = record("alice", 2);
    assert_eq!(
        store.create(&first, key("k1", "req-a"), Admission::in_flight(1000)).await.unwrap(),
        Created::New { in_flight: 1 }
    );
    let pending = Created::Existing { task_id: first.task_id, published: false, same_request: true };
    assert_eq!(store.create(&second, key("k1", "req-a"), Admission::in_flight(1000)).await.unwrap(), pending);
    assert_eq!(store.get(&second.user_id, second.task_id).await.unwrap(), None);
    let other_request = Created::Existing { task_id: first.task_id, published: false, same_request: false };
    assert_eq!(
        store.create(&second, key("k1", "req-b"), Admission::in_flight(1000)).await.unwrap(),
        other_request
    );
    // Confirming another task's publish changes nothing; confirming this one's marks it.
    store.confirm_published("alice", "k1", second.task_id).await.unwrap();
    assert_eq!(store.create(&second, key("k1", "req-a"), Admission::in_flight(1000)).await.unwrap(), pending);
    store.confirm_published("alice", "k1", first.task_id).await.unwrap();
    let published = Created::Existing { task_id: first.task_id, published: true, same_request: true };
    assert_eq!(
        store.create(&second, key("k1", "req-a"), Admission::in_flight(1000)).await.unwrap(),
        published
    );
    // A published task's key is never freed by a late cleanup.
    store.remove(&second, Some("k1")).await.unwrap();
    assert_eq!(
        store.create(&second, key("k1", "req-a"), Admission::in_flight(1000)).await.unwrap(),
        published
    );
    // Keys are per user.
    let bobs = record("bob", 3);
    assert_eq!(
        store.create(&bobs, key("k1", "req-a"), Admission::in_flight(1000)).await.unwrap(),
        Created::New { in_flight: 1 }
    );
}

async fn removing_an_unpublished_task_frees_its_idempotency_key(store: &dyn TaskStore) {
    let first = record("alice", 1);
    store.create(&first, key("k", "r"), Admission::in_flight(1000)).await.unwrap();
    store.remove(&first, Some("k")).await.unwrap();
    assert_eq!(store.get(&first.user_id, first.task_id).await.unwrap(), None);
    assert!(store.list_since("alice", 0, None, 10, BIG).await.unwrap().tasks.is_empty());
    assert_eq!(
        store.create(&record("alice", 2), key("k", "r"), Admission::in_flight(1000)).await.unwrap(),
        Created::New { in_flight: 1 }
    );
}

async fn a_cancel_ends_a_queued_task_and_a_stopped_one_ends_a_running_task(store: &dyn TaskStore) {
    let waiting = record("alice", 1);
    store.create(&waiting, None, Admission::in_flight(1000)).await.unwrap();
    assert_eq!(store.transition(&waiting.cancelled(&SystemClock)).await.unwrap(), Transition::Applied);
    let stored = store.get(&waiting.user_id, waiting.task_id).await.unwrap().unwrap();
    assert_eq!(stored.status, TaskStatus::Cancelled);
    assert_eq!(stored.error.unwrap().code, "cancelled");
    // A worker that picks it up later finds it cancelled and does not run it.
    assert!(matches!(
        store.transition(&with_status(&waiting, TaskStatus::Running)).await.unwrap(),
        Transition::Kept(current) if current.status == TaskStatus::Cancelled
    ));

    // A running generation its owner stopped ends cancelled with its text (the api lets
    // only generations be stopped while they run); nothing ends it again after that.
    let started = record("alice", 2);
    store.create(&started, None, Admission::in_flight(1000)).await.unwrap();
    let running = started.started(&SystemClock);
    store.transition(&running).await.unwrap();
    let stopped = running.stopped(serde_json::json!({"text": "so far"}), 5, &SystemClock);
    assert_eq!(store.transition(&stopped).await.unwrap(), Transition::Applied);
    let stored = store.get(&started.user_id, started.task_id).await.unwrap().unwrap();
    assert_eq!(
        (stored.status, stored.output),
        (TaskStatus::Cancelled, Some(serde_json::json!({"text": "so far"})))
    );
    assert!(matches!(
        store.transition(&running.succeeded(serde_json::json!({}), 9, &SystemClock)).await.unwrap(),
        Transition::Kept(_)
    ));
    assert_eq!(
        store.transition(&record("alice", 3).cancelled(&SystemClock)).await.unwrap(),
        Transition::Missing
    );
}

async fn list_since_returns_only_the_users_later_tasks_in_order(store: &dyn TaskStore) {
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let tasks: Vec<TaskRecord> = (0..5).map(|i| record("alice", base + i)).collect();
    for task in &tasks {
        store.create(task, None, Admission::in_flight(1000)).await.unwrap();
    }
    store.create(&record("bob", base + 2), None, Admission::in_flight(1000)).await.unwrap();
    let all = store.list_since("alice", 0, None, 100, BIG).await.unwrap();
    assert_eq!(ids(&all.tasks), ids(&tasks));
    assert!(!all.more);
    let later = store.list_since("alice", base + 2, Some(tasks[2].task_id), 100, BIG).await.unwrap();
    assert_eq!(ids(&later.tasks), ids(&tasks[3..]));
    let two = store.list_since("alice", 0, None, 2, BIG).await.unwrap();
    assert_eq!((two.tasks.len(), two.more, two.cursor), (2, true, Some(tasks[1].task_id)));
    // A byte budget ends a page early (never before its first task) and says so.
    let one_record = serde_json::to_string(&tasks[0]).unwrap().len();
    let by_bytes = store.list_since("alice", 0, None, 100, one_record * 2 + 1).await.unwrap();
    assert_eq!((by_bytes.tasks.len(), by_bytes.more), (2, true));
    let tiny = store.list_since("alice", 0, None, 100, 1).await.unwrap();
    assert_eq!((tiny.tasks.len(), tiny.more), (1, true));
}

const BIG: usize = usize::MAX;

fn ids(records: &[TaskRecord]) -> Vec<TaskId> {
    records.iter().map(|r| r.task_id).collect()
}

/// Old tasks whose records expired (written with a short TTL) and newer live ones: every
/// page skips the expired entries, never counts them, and says whether more follow, so
/// paging from the start finds every live task.
#[tokio::test]
async fn listing_skips_expired_tasks_and_never_hides_newer_ones() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("storetest-{}", uuid::Uuid::now_v7().simple());
    let short = RedisTaskStore::new(&url, &prefix, Duration::from_secs(1), Arc::new(SystemClock)).unwrap();
    let long = RedisTaskStore::new(&url, &prefix, Duration::from_secs(120), Arc::new(SystemClock)).unwrap();
    let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    for i in 0..30 {
        short.create(&record("alice", base + i), None, Admission::in_flight(1000)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let live: Vec<TaskRecord> = (0..5).map(|i| record("alice", base + 100 + i)).collect();
    for task in &live {
        long.create(task, None, Admission::in_flight(1000)).await.unwrap();
    }

    let first = long.list_since("alice", 0, None, 10, BIG).await.unwrap();
    assert_eq!(ids(&first.tasks), ids(&live), "the expired 30 are skipped, not counted");
    assert!(!first.more);

    let mut paged = Vec::new();
    let (mut since, mut after) = (0, None);
    loop {
        let page = long.list_since("alice", since, after, 2, BIG).await.unwrap();
        paged.extend(page.tasks.clone());
        if !page.more {
            break;
        }
        let cursor = page.cursor.unwrap();
        let cursor_ms =
            paged.iter().find(|t| t.task_id == cursor).map(|t| t.submitted_at_ms).unwrap_or(since);
        (since, after) = (cursor_ms, Some(cursor));
    }
    assert_eq!(ids(&paged), ids(&live));
}

async fn a_worker_can_record_a_task_whose_queued_record_was_lost(store: &dyn TaskStore) {
    let task = record("alice", 5);
    // e.g. Redis restarted without persistence between the api and the worker.
    assert_eq!(
        store.transition(&with_status(&task, TaskStatus::Running)).await.unwrap(),
        Transition::Applied
    );
    assert_eq!(store.list_since("alice", 0, None, 10, BIG).await.unwrap().tasks.len(), 1);
}

async fn the_result_quota_refuses_a_task_whose_result_would_pass_it(store: &dyn TaskStore) {
    let admit = |bytes| Admission { max_in_flight: 1000, result_bytes: bytes, result_quota: 1000 };
    assert_eq!(
        store.create(&record("alice", 1), None, admit(400)).await.unwrap(),
        Created::New { in_flight: 1 }
    );
    assert_eq!(
        store.create(&record("alice", 2), None, admit(600)).await.unwrap(),
        Created::New { in_flight: 2 },
        "exactly full"
    );
    let third = record("alice", 3);
    match store.create(&third, None, admit(1)).await.unwrap() {
        Created::QuotaReached { held, retry_after_secs } => {
            assert_eq!((held, retry_after_secs > 0), (1000, true))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.get(&third.user_id, third.task_id).await.unwrap(), None, "nothing written");
    assert_eq!(
        store.create(&record("bob", 3), None, admit(1000)).await.unwrap(),
        Created::New { in_flight: 1 },
        "per user"
    );
    let no_quota = Admission::in_flight(1000);
    assert_eq!(
        store.create(&record("alice", 4), None, no_quota).await.unwrap(),
        Created::New { in_flight: 3 }
    );
}

async fn a_long_generation_takes_its_slots_until_it_ends_or_is_removed(store: &dyn TaskStore) {
    let slotted = |user: &str, at: u64, slots: u64| {
        TaskRecord::queued(
            &TaskEnvelope::new(
                user,
                "llm",
                serde_json::json!({}),
                InferenceChannel::private(user).unwrap(),
                at,
            )
            .with_slots(slots),
        )
    };
    let long = slotted("alice", 1, 8);
    assert_eq!(
        store.create(&long, None, Admission::in_flight(10)).await.unwrap(),
        Created::New { in_flight: 8 }
    );
    assert_eq!(
        store.create(&slotted("alice", 2, 3), None, Admission::in_flight(10)).await.unwrap(),
        Created::LimitReached,
        "8 + 3 slots pass the cap of 10"
    );
    assert_eq!(
        store.create(&slotted("alice", 3, 2), None, Admission::in_flight(10)).await.unwrap(),
        Created::New { in_flight: 10 }
    );
    store.transition(&with_status(&long, TaskStatus::Running)).await.unwrap();
    store.transition(&with_status(&long, TaskStatus::Succeeded)).await.unwrap();
    let short = record("alice", 4);
    assert_eq!(
        store.create(&short, None, Admission::in_flight(10)).await.unwrap(),
        Created::New { in_flight: 3 },
        "the finished generation gave back its 8"
    );
    let removed = slotted("alice", 5, 4);
    assert_eq!(
        store.create(&removed, None, Admission::in_flight(10)).await.unwrap(),
        Created::New { in_flight: 7 }
    );
    store.remove(&removed, None).await.unwrap();
    assert_eq!(
        store.create(&record("alice", 6), None, Admission::in_flight(10)).await.unwrap(),
        Created::New { in_flight: 4 },
        "a removed task gives back its slots"
    );
}

async fn the_in_flight_cap_refuses_new_tasks_until_one_finishes(store: &dyn TaskStore) {
    let first = record("alice", 1);
    assert_eq!(
        store.create(&first, None, Admission::in_flight(2)).await.unwrap(),
        Created::New { in_flight: 1 }
    );
    assert_eq!(
        store.create(&record("alice", 2), None, Admission::in_flight(2)).await.unwrap(),
        Created::New { in_flight: 2 }
    );
    assert_eq!(
        store.create(&record("alice", 3), None, Admission::in_flight(2)).await.unwrap(),
        Created::LimitReached
    );
    assert_eq!(
        store.create(&record("bob", 3), None, Admission::in_flight(2)).await.unwrap(),
        Created::New { in_flight: 1 },
        "caps are per user"
    );
    store.transition(&with_status(&first, TaskStatus::Running)).await.unwrap();
    assert_eq!(
        store.create(&record("alice", 4), None, Admission::in_flight(2)).await.unwrap(),
        Created::LimitReached,
        "running still counts"
    );
    store.transition(&with_status(&first, TaskStatus::Succeeded)).await.unwrap();
    // A redelivery finishing it again frees nothing more.
    store.transition(&with_status(&first, TaskStatus::Failed)).await.unwrap();
    assert_eq!(
        store.create(&record("alice", 5), None, Admission::in_flight(2)).await.unwrap(),
        Created::New { in_flight: 2 }
    );
    assert_eq!(
        store.create(&record("alice", 6), None, Admission::in_flight(2)).await.unwrap(),
        Created::LimitReached
    );
}

/// Puts a new task in `status` by the moves the lifecycle allows.
async fn task_in(store: &dyn TaskStore, status: Option<TaskStatus>) -> TaskRecord {
    let task = record("alice", 1);
    match status {
        None => {}
        Some(TaskStatus::Queued) => {
            assert!(matches!(
                store.create(&task, None, Admission::in_flight(1000)).await.unwrap(),
                Created::New { .. }
            ))
        }
        Some(TaskStatus::Cancelled) => {
            store.create(&task, None, Admission::in_flight(1000)).await.unwrap();
            store.transition(&task.cancelled(&SystemClock)).await.unwrap();
        }
        Some(other) => {
            store.transition(&with_status(&task, other)).await.unwrap();
        }
    }
    assert_eq!(store.get(&task.user_id, task.task_id).await.unwrap().map(|r| r.status), status);
    task
}

async fn every_move_is_applied_exactly_when_the_lifecycle_allows_it(store: &dyn TaskStore) {
    let targets = TaskStatus::ALL.into_iter().filter(|s| *s != TaskStatus::Queued);
    for from in [None].into_iter().chain(TaskStatus::ALL.map(Some)) {
        for to in targets.clone() {
            let task = task_in(store, from).await;
            let applied = store.transition(&with_status(&task, to)).await.unwrap() == Transition::Applied;
            assert_eq!(applied, to.may_follow(from), "{from:?} → {to}");
            let stored = store.get(&task.user_id, task.task_id).await.unwrap().map(|r| r.status);
            assert_eq!(stored, if applied { Some(to) } else { from }, "{from:?} → {to}");
        }
    }
}

#[tokio::test]
async fn the_memory_store_fails_like_an_unreachable_redis_when_told() {
    let store = MemoryTaskStore::new();
    store.set_available(false);
    assert!(!store.is_ready().await);
    assert!(store.create(&record("alice", 1), None, Admission::in_flight(10)).await.is_err());
    store.set_available(true);
    assert!(store.is_ready().await);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let store =
        RedisTaskStore::new("redis://127.0.0.1:1", "x", Duration::from_secs(60), Arc::new(SystemClock))
            .unwrap();
    assert!(!store.is_ready().await);
    let result =
        tokio::time::timeout(Duration::from_secs(20), store.get("alice", TaskId::new_v7())).await.unwrap();
    assert!(result.is_err());
}

async fn a_first_claim_leaves_a_running_task_to_its_worker_and_a_redelivery_takes_it_over(
    store: &dyn TaskStore,
) {
    let queued = record("alice", 1_000);
    store.create(&queued, None, Admission::in_flight(1000)).await.unwrap();
    let running = TaskRecord { started_at_ms: Some(1_500), ..with_status(&queued, TaskStatus::Running) };
    assert_eq!(
        store.claim(&running, Claim::First).await.unwrap(),
        Transition::Applied,
        "the first claim runs it"
    );
    assert_eq!(
        store.claim(&running, Claim::FirstAgain).await.unwrap(),
        Transition::Applied,
        "the same claim again (its answer was lost) is still its worker's"
    );
    match store.claim(&running, Claim::First).await.unwrap() {
        Transition::Kept(current) => assert_eq!(*current, running),
        other => panic!("a first claim that was not tried before is another copy's: {other:?}"),
    }
    let another = TaskRecord { started_at_ms: Some(2_000), ..running.clone() };
    match store.claim(&another, Claim::FirstAgain).await.unwrap() {
        Transition::Kept(current) => assert_eq!(*current, running),
        other => panic!("a second first delivery must leave the task to its worker: {other:?}"),
    }
    assert_eq!(
        store.claim(&another, Claim::Takeover).await.unwrap(),
        Transition::Applied,
        "a redelivery takes over"
    );
    let done = with_status(&queued, TaskStatus::Succeeded);
    store.transition(&done).await.unwrap();
    match store.claim(&running, Claim::Takeover).await.unwrap() {
        Transition::Kept(current) => assert_eq!(current.status, TaskStatus::Succeeded),
        other => panic!("a finished task is not claimed again: {other:?}"),
    }
}

async fn unsettled_publishes_are_leased_one_sweeper_at_a_time_until_settled(store: &dyn TaskStore) {
    let (early, late) = (TaskId::new_v7(), TaskId::new_v7());
    store.intend_publish(early, "early", 1_000).await.unwrap();
    store.intend_publish(late, "late", 5_000).await.unwrap();
    assert_eq!(store.take_unsettled(2_000, 10_000, 10).await.unwrap(), [(early, "early".to_owned())]);
    assert!(store.take_unsettled(2_000, 10_000, 10).await.unwrap().is_empty(), "leased: not taken twice");
    let both = store.take_unsettled(10_000, 20_000, 10).await.unwrap();
    assert_eq!(both.len(), 2, "the lease ran out at 10 000: {both:?}");
    store.settle_publish(early).await.unwrap();
    store.settle_publish(late).await.unwrap();
    assert!(store.take_unsettled(u64::MAX, 30_000, 10).await.unwrap().is_empty(), "settled");
}
