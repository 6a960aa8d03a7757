//! What operators see of the running api and worker: their Prometheus metrics (a few tasks,
//! a refused submit and an unauthenticated request, then both `/metrics` are scraped and the
//! figures must have moved as they should), JSON logs in which one task's lines from both
//! processes carry the same trace id, and OpenTelemetry spans from both, exported over OTLP
//! to a receiver in the test, that form one trace per task.

use std::time::Duration;

use inferpush_integration_tests::metrics::Scrape;
use inferpush_integration_tests::otlp::{OtlpReceiver, ReceivedSpan};
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::json;

#[tokio::test]
async fn api_and_worker_metrics_move_with_the_tasks() {
    let options = StackOptions { models: "echo,all-minilm-l6-v2".into(), ..Default::default() };
    let mut stack = Stack::start_with(options).await;
    let api_metrics = stack.api_metrics_url().await;
    let public = stack.http().get(format!("{}/metrics", stack.api_url)).send().await.unwrap();
    assert_eq!(public.status(), 404, "metrics are not served on the public port");
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

#[tokio::test]
async fn one_task_is_one_otlp_trace_across_the_api_and_the_worker() {
    let receiver = OtlpReceiver::start().await;
    let options = StackOptions {
        models: "echo,all-minilm-l6-v2".into(),
        api_env: receiver.env(),
        worker_env: receiver.env(),
        ..Default::default()
    };
    let stack = Stack::start_with(options).await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let submit = |model: &str, input: serde_json::Value, traceparent: Option<&str>| {
        let mut request = stack
            .http()
            .post(format!("{}/v1/inference", stack.api_url))
            .bearer_auth("dev-alice")
            .json(&json!({"model": model, "input": input}));
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send()
    };
    let response = submit("echo", json!({"traced": true}), Some(caller)).await.unwrap();
    assert_eq!(response.status(), 202);
    let echo_task =
        response.json::<serde_json::Value>().await.unwrap()["task_id"].as_str().unwrap().to_owned();
    let texts = json!({"texts": ["one sentence to embed", "and another"]});
    let response = submit("all-minilm-l6-v2", texts, None).await.unwrap();
    assert_eq!(response.status(), 202);
    let embed_task =
        response.json::<serde_json::Value>().await.unwrap()["task_id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        alice.next_event("inference.completed", Duration::from_secs(60)).await.expect("a result");
    }

    // The caller's trace is continued; the embedding task, sent without one, gets its own.
    let echo = trace_of(&receiver, &echo_task, &["queue_wait", "inference", "push"]).await;
    assert!(echo.iter().all(|s| s.field("traceId") == "0af7651916cd43dd8448eb211c80319c"), "{echo:#?}");
    let submit_span = echo.iter().find(|s| s.field("name") == "submit").unwrap();
    assert_eq!(submit_span.field("parentSpanId"), "b7ad6b7169203331", "the caller's span is the parent");
    let embed = trace_of(&receiver, &embed_task, &["queue_wait", "inference", "batch", "push"]).await;
    assert_ne!(embed[0].field("traceId"), echo[0].field("traceId"));
}

/// Waits until the trace of the task `task_id` holds the api's `submit` span, the worker's
/// `task` span under it and `children` under that (one level or more down), all with one
/// trace id; returns the trace's spans.
async fn trace_of(receiver: &OtlpReceiver, task_id: &str, children: &[&str]) -> Vec<ReceivedSpan> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spans = receiver.spans();
        let has_task = |s: &&ReceivedSpan| {
            s.span["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["key"] == "task_id" && a["value"]["stringValue"] == task_id)
        };
        let submit = spans
            .iter()
            .filter(has_task)
            .find(|s| s.service == "inferpush-api" && s.field("name") == "submit");
        let task = spans
            .iter()
            .filter(has_task)
            .find(|s| s.service == "inferpush-worker" && s.field("name") == "task");
        if let (Some(submit), Some(task)) = (submit, task) {
            let trace: Vec<ReceivedSpan> =
                spans.iter().filter(|s| s.field("traceId") == submit.field("traceId")).cloned().collect();
            let under_task = |name: &str| {
                trace
                    .iter()
                    .any(|s| s.field("name") == name && descends_from(&trace, s, task.field("spanId")))
            };
            if task.field("parentSpanId") == submit.field("spanId") && children.iter().all(|c| under_task(c))
            {
                return trace;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no complete trace for {task_id} in:\n{spans:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// True when `span` sits (at any depth) under the span `ancestor` in `trace`.
fn descends_from(trace: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &str) -> bool {
    let mut parent = span.field("parentSpanId").to_owned();
    for _ in 0..trace.len() {
        if parent == ancestor {
            return true;
        }
        match trace.iter().find(|s| s.field("spanId") == parent) {
            Some(next) => parent = next.field("parentSpanId").to_owned(),
            None => return false,
        }
    }
    false
}
