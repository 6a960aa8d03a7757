//! The store behind a Sentinel when its master is killed: it follows the promoted replica
//! without a restart, and what it acknowledged before the kill (accepted tasks, stored
//! results, logged events: each waited for the replica) is all there after it.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use inferpush_protocol::{InferenceChannel, SystemClock, TaskEnvelope, TaskRecord, TaskStatus};
use inferpush_store::events::Start;
use inferpush_store::{Admission, Created, EventLog, RedisTaskStore, TaskStore, Transition};

fn task(user: &str, n: u64) -> TaskRecord {
    TaskRecord::queued(&TaskEnvelope::new(
        user,
        "echo",
        serde_json::json!({"n": n}),
        InferenceChannel::private(user).unwrap(),
        n,
    ))
}

#[tokio::test]
async fn a_killed_master_loses_nothing_acknowledged_and_the_store_follows_the_new_one() {
    let setup = support::start_sentinel("failover");
    let store =
        RedisTaskStore::open(&setup.target, "failover", Duration::from_secs(600), Arc::new(SystemClock))
            .unwrap();
    let log = store.events();
    let mut accepted = Vec::new();
    for n in 0..40 {
        let record = task(if n % 2 == 0 { "alice" } else { "bob" }, n);
        assert!(matches!(
            store.create(&record, None, Admission::in_flight(1000)).await.unwrap(),
            Created::New { .. }
        ));
        accepted.push(record);
    }
    let mut finished = Vec::new();
    for record in accepted.iter().take(20) {
        let mut done = record.clone();
        done.status = TaskStatus::Running;
        assert_eq!(store.transition(&done).await.unwrap(), Transition::Applied);
        done.status = TaskStatus::Succeeded;
        done.output = Some(serde_json::json!({"echo": record.task_id.to_string()}));
        assert_eq!(store.transition(&done).await.unwrap(), Transition::Applied);
        log.append(&done.user_id, done.task_id, "inference.completed", "{}").await.unwrap();
        finished.push(done);
    }

    let killed = Instant::now();
    support::kill_server(setup.master);

    // Submits fail until the Sentinel promotes the replica, then succeed on it.
    let probe = task("carol", 1000);
    let recovered = loop {
        assert!(killed.elapsed() < Duration::from_secs(30), "no failover within 30 s");
        match store.create(&probe, None, Admission::in_flight(1000)).await {
            Ok(Created::New { .. }) => break killed.elapsed(),
            Ok(other) => panic!("{other:?}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    eprintln!("submits recovered {recovered:?} after the master's SIGKILL");
    assert!(support::cli(setup.replica, &["role"]).starts_with("master"), "the replica was promoted");

    for record in accepted.iter().skip(20) {
        let stored = store.get(&record.user_id, record.task_id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(record), "an accepted task survives");
    }
    for done in &finished {
        let stored = store.get(&done.user_id, done.task_id).await.unwrap();
        assert_eq!(stored.as_ref(), Some(done), "a stored result survives");
    }
    for user in ["alice", "bob"] {
        let events = log.read(user, Start::Since(0), 100).await.unwrap();
        assert_eq!(events.len(), 10, "{user}'s logged events survive");
    }
    // And it keeps working: the tasks go on to their end on the new master.
    let mut last = accepted[39].clone();
    last.status = TaskStatus::Failed;
    assert_eq!(store.transition(&last).await.unwrap(), Transition::Applied);
}

/// A master whose replica is gone keeps taking writes (logged), as Redis itself does: a
/// replica's loss is not an outage; one that is only behind gets a few more waits.
#[tokio::test]
async fn a_master_that_lost_its_replica_still_accepts() {
    let setup = support::start_sentinel("lonely");
    let store =
        RedisTaskStore::open(&setup.target, "lonely", Duration::from_secs(600), Arc::new(SystemClock))
            .unwrap();
    support::kill_server(setup.replica);
    let started = Instant::now();
    let record = task("alice", 1);
    assert!(matches!(
        store.create(&record, None, Admission::in_flight(10)).await.unwrap(),
        Created::New { .. }
    ));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert_eq!(store.get("alice", record.task_id).await.unwrap(), Some(record));
}

/// Sentinels that ask for a password are given `INFERPUSH_REDIS_SENTINEL_PASSWORD`'s; without
/// it, the store cannot find the master and says so.
#[tokio::test]
async fn sentinels_that_ask_for_a_password_are_given_it() {
    let setup = support::start_sentinel_with("guarded", &[("SENTINEL_PASSWORD", "sentinel-secret")]);
    let mut target = setup.target.clone();
    target.sentinel_password = Some("sentinel-secret".into());
    let store =
        RedisTaskStore::open(&target, "guarded", Duration::from_secs(600), Arc::new(SystemClock)).unwrap();
    let record = task("alice", 1);
    assert!(matches!(
        store.create(&record, None, Admission::in_flight(10)).await.unwrap(),
        Created::New { .. }
    ));
    let without =
        RedisTaskStore::open(&setup.target, "guarded", Duration::from_secs(600), Arc::new(SystemClock))
            .unwrap();
    assert!(without.get("alice", record.task_id).await.is_err(), "no password, no master");
}
