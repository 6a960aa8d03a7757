//! The whole path against the real RabbitMQ and Soketi: HTTP submit → queue → worker →
//! Soketi → Pusher client.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use inferpush_integration_tests::stack::{APP_ID, APP_KEY};
use inferpush_integration_tests::{PusherClient, Services, Stack, StackOptions};
use inferpush_protocol::AppCredentials;
use serde_json::{Value, json};

const RESULT_WAIT: Duration = Duration::from_secs(20);

/// Collects `inference.*` events until `expected` distinct task ids arrived (or `timeout`
/// passed without progress); returns how often each task id arrived.
async fn collect_results(
    client: &mut PusherClient,
    expected: usize,
    timeout: Duration,
) -> HashMap<String, usize> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    while seen.len() < expected {
        let Some(message) = client.next(timeout).await else {
            break;
        };
        if message.event.starts_with("inference.") && message.event != "inference.started" {
            let id = message.json()["task_id"].as_str().unwrap_or_default().to_owned();
            *seen.entry(id).or_default() += 1;
        }
    }
    // Give late duplicates a moment to show themselves.
    while let Some(message) = client.next(Duration::from_millis(300)).await {
        if message.event.starts_with("inference.") && message.event != "inference.started" {
            let id = message.json()["task_id"].as_str().unwrap_or_default().to_owned();
            *seen.entry(id).or_default() += 1;
        }
    }
    seen
}

#[tokio::test]
async fn rust_pusher_client_receives_its_result_with_the_same_task_id() {
    round_trip_with_the_rust_client(Services::Processes).await;
}

#[tokio::test]
async fn in_containers_the_rust_pusher_client_receives_its_result_with_the_same_task_id() {
    round_trip_with_the_rust_client(Services::Containers).await;
}

async fn round_trip_with_the_rust_client(services: Services) {
    let stack = Stack::start_with(StackOptions { services, ..Default::default() }).await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;

    // Echo waits 300 ms, so `inference.started` goes out well before the result.
    let input = json!({"text": "hello, inferpush", "nested": {"n": [1, 2, 3]}, "delay_ms": 300});
    let response = stack
        .http()
        .post(format!("{}/v1/inference", stack.api_url))
        .bearer_auth("dev-alice")
        .json(&json!({"model": "echo", "input": input}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = response.json().await.unwrap();
    let task_id = accepted["task_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(task_id).unwrap().get_version_num(), 7);
    assert_eq!(accepted["status"], "queued");
    assert_eq!(accepted["channel"], "private-inference.alice");
    assert_eq!(
        accepted["events"],
        json!({"started": "inference.started", "completed": "inference.completed", "failed": "inference.failed",
               "delta": "inference.delta"})
    );
    assert_eq!(location, format!("/v1/inference/{task_id}"));
    assert_eq!(accepted["status_url"], location);

    // First `inference.started` (best effort, but nothing is in its way here), then the result.
    let started = alice.next(RESULT_WAIT).await.expect("an event");
    assert_eq!(started.event, "inference.started", "{started:?}");
    assert_eq!(started.json()["task_id"], task_id);
    assert_eq!(started.json()["status"], "running");
    assert!(started.json()["timings"]["queued_ms"].as_u64().is_some());

    let event = alice
        .next_event("inference.completed", RESULT_WAIT)
        .await
        .unwrap_or_else(|| panic!("no result arrived\n{}", stack.logs()));
    assert_eq!(event.channel.as_deref(), Some("private-inference.alice"));
    let data = event.json();
    assert_eq!(data["task_id"], task_id);
    assert_eq!(data["model"], "echo");
    assert_eq!(data["status"], "succeeded");
    assert_eq!(data["output"], input);
    assert!(data["timings"]["total_ms"].as_u64().is_some());

    // The result is stored for its owner, and invisible to anyone else.
    let (status, record) = stack.task("dev-alice", task_id).await;
    assert_eq!(status, 200);
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["output"], input);
    assert_eq!(stack.task("dev-bob", task_id).await.0, 404);
    assert_eq!(stack.task("dev-alice", &uuid::Uuid::now_v7().to_string()).await.0, 404);
}

#[tokio::test]
async fn laravel_echo_style_json_auth_on_broadcasting_path_subscribes() {
    let stack = Stack::start().await;
    let mut client = stack.pusher_client().await;
    let response = stack
        .http()
        .post(format!("{}/broadcasting/auth", stack.api_url))
        .bearer_auth("dev-bob")
        .json(&json!({"socket_id": client.socket_id, "channel_name": "private-inference.bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let auth: Value = response.json().await.unwrap();
    client.subscribe("private-inference.bob", auth["auth"].as_str().unwrap(), None).await.unwrap();
    let (status, accepted) = stack.submit("dev-bob", "echo", json!({"x": 1})).await;
    assert_eq!(status, 202);
    let event = client.next_event("inference.completed", RESULT_WAIT).await.expect("result");
    assert_eq!(event.json()["task_id"], accepted["task_id"]);
}

#[tokio::test]
async fn alice_gets_no_signature_for_bobs_channel_and_the_push_server_refuses_a_forged_one() {
    channels_are_isolated(Services::Processes).await;
}

#[tokio::test]
async fn in_containers_alice_gets_no_signature_for_bobs_channel_and_the_push_server_refuses_a_forged_one() {
    channels_are_isolated(Services::Containers).await;
}

async fn channels_are_isolated(services: Services) {
    let stack = Stack::start_with(StackOptions { services, ..Default::default() }).await;
    let mut client = stack.pusher_client().await;
    let socket = client.socket_id.clone();

    for channel in [
        "private-inference.bob",
        "presence-inference.bob",
        "private-chat.alice",
        "private-inference.alice,bob",
    ] {
        let (status, body) = stack.channel_auth("dev-alice", &socket, channel).await;
        assert_eq!(status, 403, "{channel}: {body}");
        assert!(body["detail"].as_str().is_some(), "{body}");
    }
    let (status, _) = stack.channel_auth("nobody", &socket, "private-inference.alice").await;
    assert_eq!(status, 401);

    // Alice's valid signature for her channel does not open Bob's...
    let (_, own) = stack.channel_auth("dev-alice", &socket, "private-inference.alice").await;
    let reused = client.subscribe("private-inference.bob", own["auth"].as_str().unwrap(), None).await;
    assert!(reused.is_err(), "Soketi accepted alice's signature for bob's channel");
    // ...and neither does one made with a guessed secret.
    let forged = AppCredentials::new(APP_ID, APP_KEY, "guessed-secret")
        .authorize_private(&socket, "private-inference.bob")
        .unwrap();
    let mut client = stack.pusher_client().await;
    let forged_for_this_socket = AppCredentials::new(APP_ID, APP_KEY, "guessed-secret")
        .authorize_private(&client.socket_id, "private-inference.bob")
        .unwrap();
    assert_ne!(forged, forged_for_this_socket);
    let refused = client.subscribe("private-inference.bob", &forged_for_this_socket, None).await;
    assert!(refused.is_err(), "Soketi accepted a forged signature");

    // And Bob's results never reach that connection.
    let (status, _) = stack.submit("dev-bob", "echo", json!({"secret": "bob's"})).await;
    assert_eq!(status, 202);
    assert!(client.next_event("inference.completed", Duration::from_secs(2)).await.is_none());
}

#[tokio::test]
async fn five_hundred_concurrent_tasks_from_two_users_each_arrive_once_at_their_owner() {
    let stack = Stack::start().await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    let mut bob = stack.subscribed_client("dev-bob", "private-inference.bob").await;

    let submits = (0..500).map(|i| {
        let key = if i % 2 == 0 { "dev-alice" } else { "dev-bob" };
        let stack = &stack;
        async move {
            let (status, body) = stack.submit(key, "echo", json!({"i": i})).await;
            assert_eq!(status, 202, "{body}");
            (key, body["task_id"].as_str().unwrap().to_owned())
        }
    });
    let accepted = join_all(submits).await;
    let ids_of = |key: &str| {
        accepted.iter().filter(|(k, _)| *k == key).map(|(_, id)| id.clone()).collect::<HashSet<_>>()
    };
    let (alice_ids, bob_ids) = (ids_of("dev-alice"), ids_of("dev-bob"));
    assert_eq!((alice_ids.len(), bob_ids.len()), (250, 250));

    let (alice_got, bob_got) = tokio::join!(
        collect_results(&mut alice, 250, RESULT_WAIT),
        collect_results(&mut bob, 250, RESULT_WAIT)
    );
    let alice_keys: HashSet<String> = alice_got.keys().cloned().collect();
    let bob_keys: HashSet<String> = bob_got.keys().cloned().collect();
    assert_eq!(alice_keys, alice_ids, "alice got {} of 250\n{}", alice_keys.len(), stack.logs());
    assert_eq!(bob_keys, bob_ids, "bob got {} of 250", bob_keys.len());
    assert!(alice_got.values().chain(bob_got.values()).all(|n| *n == 1), "a result arrived twice");
    assert_eq!(stack.queued("echo").await, 0, "tasks left behind");
}

#[tokio::test]
async fn sigterm_mid_burst_loses_nothing_and_a_new_worker_finishes_the_rest() {
    let options = StackOptions { prefetch: 8, ..Default::default() };
    let mut stack = Stack::start_with(options).await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;

    let mut ids = HashSet::new();
    for i in 0..120 {
        let (status, body) = stack.submit("dev-alice", "echo", json!({"i": i, "delay_ms": 200})).await;
        assert_eq!(status, 202);
        ids.insert(body["task_id"].as_str().unwrap().to_owned());
    }
    // Let some finish, then stop the worker in the middle of the burst.
    let mut seen: HashMap<String, usize> = HashMap::new();
    while seen.len() < 10 {
        let message = alice.next_event("inference.completed", RESULT_WAIT).await.expect("first results");
        *seen.entry(message.json()["task_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let mut worker = stack.worker.take().unwrap();
    worker.signal("TERM");
    let code = worker.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "worker did not stop cleanly:\n{}", worker.log_text());
    assert!(worker.log_text().contains("all tasks in hand settled"), "{}", worker.log_text());

    let (_, consumers) = stack.queue_stats(&stack.topology.queue("echo")).await;
    assert_eq!(consumers, 0);
    let left = stack.queued("echo").await;
    assert!(left > 0, "the burst finished before the stop; the test proves nothing");
    stack.start_worker().await;
    for (id, n) in collect_results(&mut alice, ids.len() - seen.len(), RESULT_WAIT).await {
        *seen.entry(id).or_default() += n;
    }
    let arrived: HashSet<String> = seen.keys().cloned().collect();
    let missing: Vec<_> = ids.difference(&arrived).collect();
    assert!(missing.is_empty(), "{} tasks lost: {missing:?}\n{}", missing.len(), stack.logs());
    // A graceful stop acks everything it finished, so nothing runs twice.
    assert!(seen.values().all(|n| *n == 1), "duplicates after a graceful stop: {seen:?}");
}

#[tokio::test]
async fn rejected_requests_publish_nothing_and_answer_problem_json() {
    let stack = Stack::start_with(StackOptions { worker: false, ..Default::default() }).await;
    let url = format!("{}/v1/inference", stack.api_url);
    let http = stack.http();
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (http.post(&url).json(&json!({"model": "echo", "input": {}})), 401),
        (http.post(&url).bearer_auth("not-a-key").json(&json!({"model": "echo", "input": {}})), 401),
        (
            http.post(&url)
                .header("authorization", "Basic ZGV2LWFsaWNlOg==")
                .json(&json!({"model": "echo", "input": {}})),
            401,
        ),
        (
            http.post(&url)
                .bearer_auth("dev-alice")
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        (http.post(&url).bearer_auth("dev-alice").header("content-type", "text/plain").body("{}"), 415),
        (http.post(&url).bearer_auth("dev-alice").json(&json!({"model": "gpt-9", "input": {}})), 422),
        (
            http.post(&url)
                .bearer_auth("dev-alice")
                .json(&json!({"model": "echo", "input": {"delay_ms": -1}})),
            422,
        ),
        (
            http.post(&url)
                .bearer_auth("dev-alice")
                .json(&json!({"model": "echo", "input": {"delay_ms": 60001}})),
            422,
        ),
        (http.post(&url).bearer_auth("dev-alice").json(&json!({"model": "echo"})), 422),
        (http.post(&url).bearer_auth("dev-alice").json(&json!({"input": {}})), 422),
        (
            http.post(&url)
                .bearer_auth("dev-alice")
                .header("content-type", "application/json")
                .body(vec![b' '; 2 * 1024 * 1024]),
            413,
        ),
    ];
    for (index, (request, expected)) in cases.into_iter().enumerate() {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "case {index}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "case {index}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], expected, "case {index}");
        assert!(!problem["detail"].as_str().unwrap_or_default().is_empty(), "case {index}: {problem}");
    }
    assert_eq!(stack.queued("echo").await, 0, "a rejected request was published");

    let (status, _) = stack.submit("dev-alice", "echo", json!({})).await;
    assert_eq!(status, 202);
    assert_eq!(stack.queued("echo").await, 1, "an accepted task is in the queue");
    let health = http.get(format!("{}/healthz", stack.api_url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_client_that_subscribes_after_its_tasks_finished_catches_up_with_since() {
    let stack = Stack::start().await;
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut ids = Vec::new();
    for i in 0..25 {
        let (status, body) = stack.submit("dev-alice", "echo", json!({"i": i})).await;
        assert_eq!(status, 202);
        ids.push(body["task_id"].as_str().unwrap().to_owned());
    }
    // Nobody was listening. Wait until all are done, then catch up, 7 per page.
    let deadline = tokio::time::Instant::now() + RESULT_WAIT;
    loop {
        let (_, last) = stack.task("dev-alice", ids.last().unwrap()).await;
        if last["status"] == "succeeded" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "tasks did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut caught_up = Vec::new();
    for _ in 0..50 {
        caught_up = stack.tasks_since("dev-alice", before, 7).await;
        if caught_up.iter().all(|t| t.status == inferpush_protocol::TaskStatus::Succeeded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed: Vec<String> = caught_up.iter().map(|t| t.task_id.to_string()).collect();
    assert_eq!(listed, ids, "every task, once, oldest first");
    for (i, task) in caught_up.iter().enumerate() {
        assert_eq!(task.output, Some(json!({"i": i})));
    }
    // Paging by task id: only what came after it.
    let after_tenth =
        stack.http().get(format!("{}/v1/inference?since={}", stack.api_url, ids[9])).bearer_auth("dev-alice");
    let page: Value = after_tenth.send().await.unwrap().json().await.unwrap();
    assert_eq!(page["tasks"].as_array().unwrap().len(), 15);
    // Bob sees none of it.
    assert!(stack.tasks_since("dev-bob", before, 100).await.is_empty());
}

#[tokio::test]
async fn a_queued_task_can_be_cancelled_and_its_owner_is_told_when_a_worker_reaches_it() {
    let mut stack = Stack::start_with(StackOptions { worker: false, ..Default::default() }).await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    let (_, accepted) = stack.submit("dev-alice", "echo", json!({"n": 1})).await;
    let id = accepted["task_id"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/inference/{id}", stack.api_url);

    let foreign = stack.http().delete(&url).bearer_auth("dev-bob").send().await.unwrap();
    assert_eq!(foreign.status(), 404, "bob cannot even see alice's task");
    let cancelled = stack.http().delete(&url).bearer_auth("dev-alice").send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    let record: Value = cancelled.json().await.unwrap();
    assert_eq!(record["status"], "cancelled");
    let again = stack.http().delete(&url).bearer_auth("dev-alice").send().await.unwrap();
    assert_eq!(again.status(), 200, "cancelling twice is harmless");

    stack.start_worker().await;
    let event = alice.next_event("inference.failed", RESULT_WAIT).await.expect("the owner is told");
    let data = event.json();
    assert_eq!(data["task_id"], id.as_str());
    assert_eq!(data["status"], "cancelled");
    assert_eq!(data["error"]["code"], "cancelled");
    assert_eq!(stack.task("dev-alice", &id).await.1["status"], "cancelled");

    // A running task can no longer be cancelled.
    let (_, running) = stack.submit("dev-alice", "echo", json!({"delay_ms": 3000})).await;
    let running_id = running["task_id"].as_str().unwrap();
    let running_url = format!("{}/v1/inference/{running_id}", stack.api_url);
    let deadline = tokio::time::Instant::now() + RESULT_WAIT;
    loop {
        let (_, record) = stack.task("dev-alice", running_id).await;
        if record["status"] == "running" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the task never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = stack.http().delete(&running_url).bearer_auth("dev-alice").send().await.unwrap();
    assert_eq!(late.status(), 409);
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_task_and_queues_nothing_new() {
    let stack = Stack::start_with(StackOptions { worker: false, ..Default::default() }).await;
    let submit = |key: &'static str, api_key: &'static str| {
        stack
            .http()
            .post(format!("{}/v1/inference", stack.api_url))
            .bearer_auth(api_key)
            .header("idempotency-key", key)
            .json(&json!({"model": "echo", "input": {"once": true}}))
            .send()
    };
    let first: Value = submit("order-42", "dev-alice").await.unwrap().json().await.unwrap();
    let second = submit("order-42", "dev-alice").await.unwrap();
    assert_eq!(second.status(), 202);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["task_id"], second["task_id"]);
    assert_eq!(stack.queued("echo").await, 1, "one task queued");
    let bobs: Value = submit("order-42", "dev-bob").await.unwrap().json().await.unwrap();
    assert_ne!(bobs["task_id"], first["task_id"], "keys belong to their user");
    let bad = stack
        .http()
        .post(format!("{}/v1/inference", stack.api_url))
        .bearer_auth("dev-alice")
        .header("idempotency-key", "has space")
        .json(&json!({"model": "echo", "input": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_task_whose_input_can_never_work_fails_at_once_and_its_owner_is_told() {
    let stack = Stack::start().await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    // Skips the api's validation, as a buggy publisher might.
    let task = inferpush_protocol::TaskEnvelope::new(
        "alice",
        "echo",
        json!({"delay_ms": -5}),
        inferpush_protocol::InferenceChannel::private("alice").unwrap(),
        0,
    );
    stack.publish_raw("echo", &task.to_bytes()).await;
    let event = alice.next_event("inference.failed", RESULT_WAIT).await.expect("failed event");
    assert_eq!(event.json()["task_id"], task.task_id.to_string());
    assert_eq!(event.json()["error"]["code"], "invalid_input");
    let (_, record) = stack.task("dev-alice", &task.task_id.to_string()).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(stack.queued("echo").await, 0, "no retry loop for a hopeless task");
    assert_eq!(stack.queue_stats(&stack.topology.dead_letter_queue()).await.0, 0);
}

#[tokio::test]
async fn a_result_over_the_push_servers_event_limit_is_pushed_as_a_result_url() {
    let stack = Stack::start().await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    let big = "x".repeat(150 * 1024);
    let (status, accepted) = stack.submit("dev-alice", "echo", json!({"text": big})).await;
    assert_eq!(status, 202);
    let event = alice.next_event("inference.completed", RESULT_WAIT).await.expect("completed event");
    let data = event.json();
    assert_eq!(data["task_id"], accepted["task_id"]);
    assert!(data.get("output").is_none());
    let url = data["result_url"].as_str().expect("result_url").to_owned();
    assert_eq!(url, format!("/v1/inference/{}", accepted["task_id"].as_str().unwrap()));
    let (_, record) = stack.task("dev-alice", accepted["task_id"].as_str().unwrap()).await;
    assert_eq!(record["output"]["text"].as_str().unwrap().len(), big.len());
}

#[tokio::test]
async fn embeddings_arrive_over_pusher_and_similar_sentences_are_closer() {
    let options = StackOptions { models: "all-minilm-l6-v2".into(), ..Default::default() };
    let stack = Stack::start_with(options).await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    let texts = ["A man is eating food.", "A man is eating a piece of bread.", "A monkey is playing drums."];
    let (status, accepted) = stack.submit("dev-alice", "all-minilm-l6-v2", json!({ "texts": texts })).await;
    assert_eq!(status, 202, "{accepted}");
    let event = alice
        .next_event("inference.completed", Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("no embeddings arrived\n{}", stack.logs()));
    let data = event.json();
    assert_eq!(data["task_id"], accepted["task_id"]);
    assert_eq!(data["output"]["dimensions"], 384);
    let rows: Vec<Vec<f32>> = serde_json::from_value(data["output"]["embeddings"].clone()).unwrap();
    assert_eq!(rows.len(), 3);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(dot(&rows[0], &rows[1]) > dot(&rows[0], &rows[2]) + 0.3, "eating ≈ eating, not drums");

    // Bad input is refused before anything is queued, naming the field.
    let (status, problem) = stack.submit("dev-alice", "all-minilm-l6-v2", json!({"texts": ["ok", ""]})).await;
    assert_eq!(status, 422);
    assert!(problem["detail"].as_str().unwrap().contains("input.texts[1]"), "{problem}");
}

#[tokio::test]
async fn encrypted_results_cross_the_push_server_as_ciphertext_only() {
    let stack = Stack::start().await;
    let channel = "private-encrypted-inference.alice";
    let mut client = stack.pusher_client().await;
    let (status, auth) = stack.channel_auth("dev-alice", &client.socket_id, channel).await;
    assert_eq!(status, 200, "{auth}");
    let key = inferpush_protocol::encryption::MasterKey::from_base64(
        inferpush_integration_tests::stack::MASTER_KEY_BASE64,
    )
    .unwrap();
    assert_eq!(auth["shared_secret"], key.shared_secret(channel));
    client.subscribe(channel, auth["auth"].as_str().unwrap(), None).await.unwrap();

    let secret = "the plaintext must never reach Soketi";
    let response = stack
        .http()
        .post(format!("{}/v1/inference", stack.api_url))
        .bearer_auth("dev-alice")
        .json(&json!({"model": "echo", "input": {"secret": secret}, "encrypted": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let event = client.next_event("inference.completed", RESULT_WAIT).await.expect("an encrypted event");
    assert!(!event.data.contains(secret), "plaintext on the wire: {}", event.data);
    let sealed = event.json();
    assert!(sealed["nonce"].is_string() && sealed["ciphertext"].is_string(), "{sealed}");
    let opened: Value = serde_json::from_str(&key.open(channel, &event.data).unwrap()).unwrap();
    assert_eq!(opened["output"]["secret"], secret);

    // Bob gets no shared secret for Alice's encrypted channel.
    let (status, _) = stack.channel_auth("dev-bob", &client.socket_id, channel).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn prefer_wait_answers_the_finished_task_and_the_push_still_happens() {
    let stack = Stack::start().await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    let began = std::time::Instant::now();
    let response = stack
        .http()
        .post(format!("{}/v1/inference", stack.api_url))
        .bearer_auth("dev-alice")
        .header("prefer", "wait=10")
        .json(&json!({"model": "echo", "input": {"text": "waited", "delay_ms": 300}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "finished in time");
    assert_eq!(response.headers()["preference-applied"], "wait=10");
    assert!(response.headers().contains_key("location"));
    let finished: Value = response.json().await.unwrap();
    assert_eq!(
        (finished["status"].as_str(), finished["output"]["text"].as_str()),
        (Some("succeeded"), Some("waited"))
    );
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "answered as soon as it finished: {:?}",
        began.elapsed()
    );
    let pushed = alice.next_event("inference.completed", Duration::from_secs(10)).await.expect("pushed too");
    assert_eq!(pushed.json()["task_id"], finished["task_id"]);

    // Not done in time: the usual 202, after the wait.
    let response = stack
        .http()
        .post(format!("{}/v1/inference", stack.api_url))
        .bearer_auth("dev-alice")
        .header("prefer", "wait=1")
        .json(&json!({"model": "echo", "input": {"delay_ms": 3000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
}
