//! What operators see of the running api and worker: their Prometheus metrics (a few tasks,
//! a refused submit and an unauthenticated request, then both `/metrics` are scraped and the
//! figures must have moved as they should), and JSON logs in which one task's lines from both
//! processes carry the same trace id.

use std::time::Duration;

use inferpush_integration_tests::metrics::Scrape;
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::json;

#[tokio::test]
async fn api_and_worker_metrics_move_with_the_tasks() {
    let options = StackOptions { models: "echo,all-minilm-l6-v2".into(), ..Default::default() };
    let mut stack = Stack::start_with(options).await;
    let api_metrics = format!("{}/metrics", stack.api_url);
    let worker_metrics = stack.worker_metrics_url().await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    let (api_before, worker_before) = (Scrape::of(&api_metrics).await, Scrape::of(&worker_metrics).await);

    for i in 0..3 {
        let (status, body) = stack.submit("dev-alice", "echo", json!({"i": i})).await;
        assert_eq!(status, 202, "{body}");
    }
    let texts = json!({"texts": ["a first sentence", "and a second, a little longer one"]});
    let (status, body) = stack.submit("dev-alice", "all-minilm-l6-v2", texts).await;
    assert_eq!(status, 202, "{body}");
    for _ in 0..4 {
        alice.next_event("inference.completed", Duration::from_secs(60)).await.expect("a result");
    }
    let (status, _) = stack.submit("dev-alice", "no-such-model", json!({})).await;
    assert_eq!(status, 422);
    let unauthenticated =
        stack.http().get(format!("{}/v1/inference?since=0", stack.api_url)).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    // The end-to-end figure is recorded right after the push the client just saw.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let api = Scrape::of(&api_metrics).await;
    let accepted = r#"inferpush_api_submits_total{model="echo",outcome="accepted"}"#;
    assert_eq!(api.grew(&api_before, accepted), 3.0, "{api:#?}");
    assert_eq!(
        api.grew(&api_before, r#"inferpush_api_submits_total{model="unknown",outcome="invalid"}"#),
        1.0
    );
    assert!(api.grew(&api_before, r#"inferpush_api_auth_refusals_total{status="401"}"#) >= 1.0);
    let minilm = r#"inferpush_api_submits_total{model="all-minilm-l6-v2",outcome="accepted"}"#;
    assert_eq!(api.grew(&api_before, minilm), 1.0);
    assert_eq!(api.grew(&api_before, "inferpush_api_publish_confirm_duration_seconds_count"), 4.0);
    assert!(api.value("inferpush_api_publish_confirm_duration_seconds_sum") > 0.0);
    assert_eq!(api.grew(&api_before, r#"inferpush_task_states_total{status="queued"}"#), 4.0);
    let le =
        |bucket: &str| format!(r#"inferpush_api_publish_confirm_duration_seconds_bucket{{le="{bucket}"}}"#);
    assert_eq!(api.value(&le("+Inf")), api.value("inferpush_api_publish_confirm_duration_seconds_count"));
    assert!(api.0.contains_key(&le("0.0005")), "buckets start at half a millisecond");

    let worker = Scrape::of(&worker_metrics).await;
    let e2e = r#"inferpush_worker_end_to_end_duration_seconds_count{model="echo",status="succeeded"}"#;
    assert_eq!(worker.grew(&worker_before, e2e), 3.0, "{worker:#?}");
    let waited = r#"inferpush_worker_queue_wait_seconds_count{model="echo"}"#;
    assert_eq!(worker.grew(&worker_before, waited), 3.0);
    assert_eq!(
        worker
            .grew(&worker_before, r#"inferpush_worker_task_inference_duration_seconds_count{model="echo"}"#),
        3.0
    );
    assert!(worker.grew(&worker_before, "inferpush_worker_push_duration_seconds_count") >= 1.0);
    assert_eq!(worker.grew(&worker_before, r#"inferpush_task_states_total{status="running"}"#), 4.0);
    assert_eq!(worker.grew(&worker_before, r#"inferpush_task_states_total{status="succeeded"}"#), 4.0);
    assert_eq!(worker.value(r#"inferpush_worker_push_failures_total{status="network"}"#), 0.0);
    for histogram in
        ["batch_size", "batch_tokens", "tokenization_duration_seconds", "inference_duration_seconds"]
    {
        let series =
            format!("inferpush_worker_{histogram}_count{{engine=\"ort\",model=\"all-minilm-l6-v2\"}}");
        assert!(worker.grew(&worker_before, &series) >= 1.0, "{series}: {worker:#?}");
    }
    let tokens = r#"inferpush_worker_batch_tokens_sum{engine="ort",model="all-minilm-l6-v2"}"#;
    assert!(worker.grew(&worker_before, tokens) >= 10.0, "two sentences are more than 10 tokens");
}

/// The JSON log lines of `log` whose span is the task `task_id`'s.
fn task_lines(log: &str, task_id: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["span"]["task_id"] == task_id)
        .collect()
}

#[tokio::test]
async fn one_tasks_json_log_lines_carry_one_trace_id_in_the_api_and_the_worker() {
    let json = vec![("INFERPUSH_LOG_FORMAT", "json".to_owned())];
    let options = StackOptions { api_env: json.clone(), worker_env: json, ..Default::default() };
    let stack = Stack::start_with(options).await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let response = stack
        .http()
        .post(format!("{}/v1/inference", stack.api_url))
        .bearer_auth("dev-alice")
        .header("traceparent", traceparent)
        .json(&json!({"model": "echo", "input": {"traced": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let task_id = response.json::<serde_json::Value>().await.unwrap()["task_id"].as_str().unwrap().to_owned();
    alice.next_event("inference.completed", Duration::from_secs(30)).await.expect("the result");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = stack.logs();
    let lines = task_lines(&logs, &task_id);
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
    assert!(messages.contains(&"task queued"), "the api's line: {messages:?}\n{logs}");
    assert!(messages.contains(&"task done"), "the worker's line: {messages:?}");
    for line in &lines {
        assert_eq!(line["span"]["trace_id"], "0af7651916cd43dd8448eb211c80319c", "{line}");
    }
}
