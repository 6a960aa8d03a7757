//! Deadlines (`Cancel-After`) on the real stack: a task still queued when its deadline
//! passes is dropped by RabbitMQ (its message expires into the dead-letter path), never
//! run, ends `expired`, and its owner hears `inference.failed` with code `expired`.

use std::time::Duration;

use inferpush_integration_tests::broker::queue_stats;
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::{Value, json};

#[tokio::test]
async fn a_task_still_queued_at_its_deadline_is_dropped_by_the_broker_and_ends_expired() {
    // One task at a time, so the second waits in the queue behind the first.
    let stack = Stack::start_with(StackOptions { prefetch: 1, ..Default::default() }).await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    let (status, first) = stack.submit("dev-alice", "echo", json!({"delay_ms": 4000})).await;
    assert_eq!(status, 202, "{first}");
    tokio::time::sleep(Duration::from_millis(300)).await; // the worker holds the first

    let submit = |cancel_after: &str| {
        stack
            .http()
            .post(format!("{}/v1/inference", stack.api_url))
            .bearer_auth("dev-alice")
            .header("cancel-after", cancel_after)
            .json(&json!({"model": "echo", "input": {"text": "only if in time"}}))
            .send()
    };
    let late: Value = submit("1s").await.unwrap().json().await.unwrap();
    let late_id = late["task_id"].as_str().expect("accepted").to_owned();
    let (_, record) = stack.task("dev-alice", &late_id).await;
    assert!(record["deadline_ms"].as_u64().unwrap() > record["submitted_at_ms"].as_u64().unwrap());

    // The broker drops the message at its deadline, while the worker is still busy.
    let queue = stack.topology.queue("echo");
    let mut ready = u32::MAX;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ready = queue_stats(&stack.amqp_url, &queue).await.0;
        if ready == 0 {
            break;
        }
    }
    assert_eq!(ready, 0, "the expired message left the queue before a worker was free");

    let failed = loop {
        let event = alice
            .next_event("inference.failed", Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("no inference.failed for the expired task\n{}", stack.logs()));
        if event.json()["task_id"] == late_id.as_str() {
            break event.json();
        }
    };
    assert_eq!(failed["status"], "expired");
    assert_eq!(failed["error"]["code"], "expired");
    let (_, record) = stack.task("dev-alice", &late_id).await;
    assert_eq!(record["status"], "expired");
    assert!(record.get("started_at_ms").is_none(), "never run: {record}");

    // The first still finishes; a task with time to spare runs.
    let (_, first_done) = stack.task("dev-alice", first["task_id"].as_str().unwrap()).await;
    assert_ne!(first_done["status"], "expired");
    let timely: Value = submit("2m").await.unwrap().json().await.unwrap();
    let completed = loop {
        let event =
            alice.next_event("inference.completed", Duration::from_secs(20)).await.expect("completed");
        if event.json()["task_id"] == timely["task_id"] {
            break event.json();
        }
    };
    assert_eq!(completed["output"]["text"], "only if in time");

    // A malformed deadline is refused before anything is queued.
    let refused = submit("soon").await.unwrap();
    assert_eq!(refused.status(), 400);
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("Cancel-After"), "{problem}");
}
