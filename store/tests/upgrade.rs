//! An upgrade in place: what an earlier version wrote under the flat key names is moved to
//! the hash-tagged ones, and reads as if this version had written it.

use std::sync::Arc;
use std::time::Duration;

use inferpush_protocol::{InferenceChannel, SystemClock, TaskEnvelope, TaskRecord, TaskStatus};
use inferpush_store::events::Start;
use inferpush_store::{Admission, Created, EventLog, Idempotency, ProgressStore, RedisTaskStore, TaskStore};
use redis::AsyncCommands;

#[tokio::test]
async fn an_earlier_versions_keys_are_moved_once_and_read_as_before() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("upgrade-{}", uuid::Uuid::now_v7().simple());
    let store = RedisTaskStore::new(&url, &prefix, Duration::from_secs(600), Arc::new(SystemClock)).unwrap();
    let user = "team:alice";
    let task = TaskRecord::queued(&TaskEnvelope::new(
        user,
        "echo",
        serde_json::json!({}),
        // (A channel name may not hold `:`; a user id may, and the move must keep it whole.)
        InferenceChannel::private("alice").unwrap(),
        1_000,
    ));
    let id = task.task_id;
    let digest = store.keys().idempotency(user, "key-1").rsplit(':').next().unwrap().to_owned();

    // As the flat layout wrote them.
    let mut redis =
        redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let p = &prefix;
    let _: () =
        redis.set_ex(format!("{p}:task:{id}"), serde_json::to_string(&task).unwrap(), 600).await.unwrap();
    let _: () = redis.zadd(format!("{p}:user:{user}:tasks"), id.to_string(), 1_000).await.unwrap();
    let _: () = redis.set(format!("{p}:user:{user}:inflight"), 1).await.unwrap();
    let _: () = redis
        .hset_multiple(
            format!("{p}:idem:{user}:{digest}"),
            &[("task", id.to_string()), ("published", "1".into()), ("request", "fp".into())],
        )
        .await
        .unwrap();
    let event: String = redis::cmd("XADD")
        .arg(format!("{p}:user:{user}:events"))
        .arg("*")
        .arg(&[("task", id.to_string()), ("event", "inference.started".into()), ("data", "{}".into())])
        .query_async(&mut redis)
        .await
        .unwrap();
    let _: () = redis.set(format!("{p}:event:{id}:inference.started"), &event).await.unwrap();
    let _: () = redis.set(format!("{p}:task:{id}:stop"), 1).await.unwrap();

    let migrated = store.migrate_layout().await.unwrap().expect("a first run moves");
    assert_eq!((migrated.moved, migrated.left), (7, 0));
    assert_eq!(store.migrate_layout().await.unwrap(), None, "once");

    assert_eq!(store.get(user, id).await.unwrap(), Some(task.clone()));
    assert_eq!(
        store.list_since(user, 0, None, 10, usize::MAX).await.unwrap().tasks,
        std::slice::from_ref(&task)
    );
    let replay = store
        .create(&task, Some(Idempotency { key: "key-1", request: "fp" }), Admission::in_flight(10))
        .await
        .unwrap();
    assert!(
        matches!(replay, Created::Existing { task_id, published: true, .. } if task_id == id),
        "{replay:?}"
    );
    let log = store.events();
    let events = log.read(user, Start::Since(0), 10).await.unwrap();
    assert_eq!(events.iter().map(|e| e.id.to_string()).collect::<Vec<_>>(), std::slice::from_ref(&event));
    assert_eq!(
        log.append(user, id, "inference.started", "{}").await.unwrap().to_string(),
        event,
        "marker kept"
    );
    assert!(store.progress().stop_asked(id).await.unwrap());
    // The in-flight count came along: the task's end frees its slot.
    let mut running = task.clone();
    running.status = TaskStatus::Running;
    store.transition(&running).await.unwrap();
    running.status = TaskStatus::Succeeded;
    store.transition(&running).await.unwrap();
    let in_flight: Option<u64> = redis.get(store.keys().in_flight(user)).await.unwrap();
    assert_eq!(in_flight, Some(0));
}
