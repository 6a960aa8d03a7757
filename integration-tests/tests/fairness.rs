//! Fairness between users of one model: alice keeps 2 000 tasks queued, and bob's single
//! tasks still finish about as fast as on an idle system, because tasks past a user's fair
//! share travel in the bulk lane, which workers serve after the main one.
//!
//! The worker takes 4 tasks at a time per lane and each task takes 50 ms (echo with
//! `delay_ms`), so alice's backlog would keep a first-in, first-out queue busy for about
//! 25 s: bob's task would wait that long behind it.

use std::time::{Duration, Instant};

use inferpush_integration_tests::PusherClient;
use inferpush_integration_tests::burst::spawn_burst;
use inferpush_integration_tests::{Stack, StackOptions};
use inferpush_protocol::Lane;
use serde_json::json;

const TASK_MS: u64 = 50;
const BACKLOG: usize = 2000;

/// Bob's latency, submit to `inference.completed`, over `n` tasks one after another.
async fn bobs_latencies(stack: &Stack, bob: &mut PusherClient, n: usize) -> Vec<Duration> {
    let mut latencies = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        let (status, accepted) = stack.submit("dev-bob", "echo", json!({"i": i, "delay_ms": TASK_MS})).await;
        assert_eq!(status, 202, "{accepted}");
        let task_id = accepted["task_id"].as_str().unwrap().to_owned();
        loop {
            let event = bob
                .next_event("inference.completed", Duration::from_secs(60))
                .await
                .unwrap_or_else(|| panic!("bob's task {task_id} was not done in 60 s\n{}", stack.logs()));
            if event.json()["task_id"] == task_id.as_str() {
                break;
            }
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

fn median(sorted: &[Duration]) -> Duration {
    sorted[sorted.len() / 2]
}

#[tokio::test]
async fn bobs_single_tasks_take_at_most_twice_their_idle_latency_while_alice_has_2000_queued() {
    let options = StackOptions {
        prefetch: 4,
        api_env: vec![
            ("INFERPUSH_SUBMIT_RATE", "100000".into()),
            ("INFERPUSH_SUBMIT_BURST", "100000".into()),
        ],
        ..Default::default()
    };
    let stack = Stack::start_with(options).await;
    let mut bob = stack.subscribed_client("dev-bob", "private-inference.bob").await;
    let idle = bobs_latencies(&stack, &mut bob, 10).await;

    let input = |i| json!({"i": i, "delay_ms": TASK_MS});
    let burst = spawn_burst(stack.api_url.clone(), "dev-alice", BACKLOG, 32, Duration::ZERO, input);
    let report = burst.await.unwrap();
    assert_eq!(report.accepted.len(), BACKLOG, "{report:?}");
    let bulk = stack.topology.lane_queue("echo", Lane::Bulk);
    let queued = stack.queue_stats(&bulk).await.0;
    assert!(queued >= 1500, "alice's backlog is there ({queued} queued)\n{}", stack.logs());
    let loaded = bobs_latencies(&stack, &mut bob, 10).await;
    let still_queued = stack.queue_stats(&bulk).await.0;
    println!(
        "FAIRNESS: bob idle median {:?} max {:?}; with alice's backlog median {:?} max {:?}; \
         alice still had {still_queued} queued at the end",
        median(&idle),
        idle.last().unwrap(),
        median(&loaded),
        loaded.last().unwrap()
    );
    assert!(still_queued >= 1000, "alice's backlog lasted through the measurement ({still_queued} left)");
    assert!(median(&loaded) <= median(&idle) * 2, "median: idle {idle:?}, loaded {loaded:?}");
    assert!(loaded[loaded.len() - 2] <= idle[idle.len() - 2] * 2, "p90: idle {idle:?}, loaded {loaded:?}");
}
