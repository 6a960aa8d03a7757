//! Every way a task's events leave, against the real services and real clients:
//! signed webhooks checked by the Standard Webhooks reference library, server-sent events
//! through a second api replica with a real EventSource, and MQTT to a Mosquitto of the
//! test's own with mqtt.js subscribed, through a broker restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use inferpush_integration_tests::mosquitto::{self, Mosquitto};
use inferpush_integration_tests::node::{NodeDriver, run_node_tests};
use inferpush_integration_tests::sse;
use inferpush_integration_tests::stack::WEBHOOK_SECRET;
use inferpush_integration_tests::tls::TlsFiles;
use inferpush_integration_tests::webhooks::{Attempt, WebhookReceiver};
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::{Value, json};

/// Submits `body` as alice and answers the task id.
async fn submit(stack: &Stack, body: Value) -> String {
    let (status, answer) = stack.submit_body("dev-alice", body.clone()).await;
    assert_eq!(status, 202, "{body}: {answer}");
    answer["task_id"].as_str().expect("a task id").to_owned()
}

/// Waits until alice's task is final.
async fn finished(stack: &Stack, task_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, record) = stack.task("dev-alice", task_id).await;
        if matches!(record["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
            return record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task {task_id} did not finish: {record}\n{}",
            stack.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn webhooks_are_signed_retried_on_5xx_with_one_id_filtered_and_never_retried_on_4xx() {
    let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await;
    let stack = Stack::start().await;
    let hook = |path: &str| format!("{}{path}", receiver.url);
    let flaky =
        submit(&stack, json!({"model": "echo", "input": {"text": "a"}, "webhook": hook("/flaky")})).await;
    let filtered = submit(
        &stack,
        json!({"model": "echo", "input": {"text": "b"}, "webhook": hook("/ok"), "webhook_events_filter": ["completed"]}),
    )
    .await;
    let gone =
        submit(&stack, json!({"model": "echo", "input": {"text": "c"}, "webhook": hook("/gone")})).await;
    for task in [&flaky, &filtered, &gone] {
        assert_eq!(finished(&stack, task).await["status"], "succeeded");
    }
    // The flaky receiver fails the first two attempts of each message; the backoff is
    // 0.5 s then 1 s, jittered.
    let delivered = |a: &[Attempt]| {
        let ok = |task: &str, kind: &str| {
            a.iter().any(|x| {
                x.task_id.as_deref() == Some(task) && x.kind.as_deref() == Some(kind) && x.status == 204
            })
        };
        ok(&flaky, "inference.started")
            && ok(&flaky, "inference.completed")
            && ok(&filtered, "inference.completed")
    };
    receiver.wait_for(Duration::from_secs(30), delivered).await;
    // Anything late would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = receiver.attempts();

    assert!(attempts.iter().all(|a| a.verified), "every request verifies: {attempts:#?}");
    let mut ids: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for a in &attempts {
        let key = (a.task_id.clone().unwrap_or_default(), a.kind.clone().unwrap_or_default());
        ids.entry(key).or_default().insert(a.id.clone());
    }
    assert!(
        ids.values().all(|set| set.len() == 1),
        "one webhook-id per task and event, on every attempt: {ids:#?}"
    );
    let count = |task: &str, kind: &str, status: Option<u16>| {
        attempts
            .iter()
            .filter(|a| a.task_id.as_deref() == Some(task) && a.kind.as_deref() == Some(kind))
            .filter(|a| status.is_none_or(|s| a.status == s))
            .count()
    };
    for kind in ["inference.started", "inference.completed"] {
        assert_eq!(count(&flaky, kind, None), 3, "{kind}: two 503s, then delivered: {attempts:#?}");
        assert_eq!(count(&flaky, kind, Some(204)), 1, "{kind} delivered once");
        assert_eq!(count(&gone, kind, None), 1, "{kind}: a 410 is not retried: {attempts:#?}");
    }
    assert_eq!(count(&filtered, "inference.started", None), 0, "filtered out");
    assert_eq!(count(&filtered, "inference.completed", None), 1);
}

#[tokio::test]
async fn a_stream_open_across_a_redis_restart_gets_every_event_once() {
    let mut stack = Stack::start_with(StackOptions { own_redis: true, ..Default::default() }).await;
    let url = format!("{}/v1/events", stack.api_url);
    let mut events = sse::open(stack.http(), &url, "dev-alice", None).await.expect("a stream");
    // Slow tasks: they finish while Redis is away, so their results and events wait.
    let mut tasks = Vec::new();
    for i in 0..5 {
        tasks.push(
            submit(&stack, json!({"model": "echo", "input": {"text": format!("{i}"), "delay_ms": 1500}}))
                .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.stop_redis().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stack.start_redis().await;
    for i in 5..8 {
        // As a client does, retry the 503s of the moments the api takes to reconnect.
        let body = json!({"model": "echo", "input": {"text": format!("{i}")}});
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, answer) = stack.submit_body("dev-alice", body.clone()).await;
            if status == 202 {
                tasks.push(answer["task_id"].as_str().unwrap().to_owned());
                break;
            }
            assert!(status == 503 && tokio::time::Instant::now() < deadline, "{status} {answer}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut completed: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while tasks.iter().any(|t| !completed.contains_key(t)) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(Some(event)) = tokio::time::timeout(left, events.recv()).await else {
            panic!("completions missing: {:?} of {tasks:?}\n{}", completed.keys(), stack.logs());
        };
        ids.push(event.id.clone().expect("an id"));
        if event.event == "inference.completed" {
            let data: Value = serde_json::from_str(&event.data).unwrap();
            *completed.entry(data["task_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    // Anything sent twice would come now.
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
        if event.event == "inference.completed" {
            let data: Value = serde_json::from_str(&event.data).unwrap();
            *completed.entry(data["task_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        ids.push(event.id.expect("an id"));
    }
    assert!(completed.values().all(|n| *n == 1), "each completion once: {completed:?}");
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no event id twice");
}

#[tokio::test]
async fn a_stopping_api_replica_ends_its_streams_and_exits_promptly() {
    let mut stack = Stack::start().await;
    let replica = stack.start_api_replica().await;
    let mut events =
        sse::open(stack.http(), &format!("{replica}/v1/events"), "dev-alice", None).await.unwrap();
    let took = stack.stop_api_replica().await;
    assert!(took < Duration::from_secs(5), "an open stream held the replica for {took:?}");
    let ended =
        tokio::time::timeout(Duration::from_secs(5), async { while events.recv().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the stream ended, so its client reconnects elsewhere");
}

#[tokio::test]
async fn server_sent_events_reach_an_eventsource_through_another_replica_across_a_reconnect() {
    let mut stack = Stack::start().await;
    let second = stack.start_api_replica().await;
    run_node_tests(&stack, "integration-tests/node/sse.test.mjs", &[("INFERPUSH_API_URL_2", second)]).await;
}

/// mqtt.js logged in as alice (a session of its own) with `extra` settings (at least
/// `MQTT_URL` and `MQTT_TOPIC`), once its subscription is granted.
async fn alice_subscribed(stack: &Stack, broker: &Mosquitto, extra: &[(&str, String)]) -> NodeDriver {
    let (user, password) = mosquitto::USERS[0];
    let login = [
        ("MQTT_CLIENT_ID", format!("alice-{}", uuid::Uuid::now_v7().simple())),
        ("MQTT_USERNAME", user.into()),
        ("MQTT_PASSWORD", password.into()),
    ];
    let env: Vec<(&str, String)> = login.into_iter().chain(extra.iter().cloned()).collect();
    let mut alice = NodeDriver::start_with(stack, "integration-tests/node/mqtt-subscriber.mjs", &env);
    let subscribed = alice.expect_line(&["subscribed", "error"], Duration::from_secs(20)).await;
    let granted = subscribed.is_some_and(|l| l.starts_with("subscribed"));
    assert!(granted, "{:?}\n{}", alice.transcript, broker.log());
    alice
}

/// One subscriber's messages, as `(task, event)` pairs, read off its lines.
fn received(lines: &[String]) -> Vec<(String, String, String)> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("message "))
        .map(|json| {
            let message: Value = serde_json::from_str(json).expect("a message line");
            let field = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (field(&message["topic"]), field(&message["data"]["task_id"]), field(&message["event"]))
        })
        .collect()
}

#[tokio::test]
async fn mqtt_events_reach_their_owner_only_at_qos_1_through_a_broker_restart_mid_burst() {
    let mut broker = Mosquitto::start().await;
    let worker_env = vec![
        ("INFERPUSH_SINKS", "pusher,sse,webhook,mqtt".to_owned()),
        ("INFERPUSH_MQTT_URL", broker.worker_url()),
    ];
    let stack = Stack::start_with(StackOptions { worker_env, ..Default::default() }).await;
    // Alice asks for every user's topic; the ACL gives her only her own.
    let url = broker.url("mqtt");
    let mut alice =
        alice_subscribed(&stack, &broker, &[("MQTT_URL", url), ("MQTT_TOPIC", "inferpush/+/events".into())])
            .await;

    // Tasks keep coming while the broker is down for 2 s: their events wait in the worker.
    const TASKS: usize = 120;
    let burst = async {
        let mut tasks = Vec::new();
        for i in 0..TASKS {
            let input = json!({"text": format!("t{i}"), "delay_ms": 5});
            tasks.push(submit(&stack, json!({"model": "echo", "input": input})).await);
            let (status, _) = stack.submit("dev-bob", "echo", json!({"text": "not for alice"})).await;
            assert_eq!(status, 202);
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        tasks
    };
    let restart = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        broker.restart(Duration::from_secs(2)).await;
    };
    let (tasks, ()) = tokio::join!(burst, restart);
    for task in &tasks {
        finished(&stack, task).await;
    }
    let wanted: BTreeSet<&String> = tasks.iter().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let got = received(&alice.transcript);
        let completed: BTreeSet<&String> =
            got.iter().filter(|(_, _, e)| e == "inference.completed").map(|(_, t, _)| t).collect();
        if wanted.is_subset(&completed) {
            break;
        }
        let missing = wanted.difference(&completed).count();
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {TASKS} completions never arrived\n{:?}\n{}\n{}",
            alice.transcript.iter().filter(|l| !l.starts_with("message")).collect::<Vec<_>>(),
            broker.log(),
            stack.logs()
        );
        let _ = alice.expect_line(&["message"], Duration::from_millis(500)).await;
    }
    let got = received(&alice.transcript);
    assert!(got.iter().all(|(topic, _, _)| topic == "inferpush/alice/events"), "only alice's own topic");
    assert!(got.iter().all(|(_, task, _)| wanted.contains(task)), "no task of bob's");
    assert!(
        alice.transcript.iter().any(|l| l.starts_with("offline")),
        "the broker really went away mid-burst: {:?}",
        alice.transcript.iter().filter(|l| !l.starts_with("message")).collect::<Vec<_>>()
    );
    assert!(stack.logs().contains("lost the MQTT broker"), "the worker saw the broker go");
    let duplicates = got.len() - got.iter().collect::<BTreeSet<_>>().len();
    println!(
        "{TASKS} tasks, {} messages to alice, {duplicates} repeated (QoS 1 is at least once)",
        got.len()
    );
}

#[tokio::test]
async fn mqtt_over_tls_with_the_login_in_its_own_settings() {
    let dir = inferpush_integration_tests::process::log_dir()
        .join(format!("mqtt-tls-{}", uuid::Uuid::now_v7().simple()));
    let files = TlsFiles::make(&dir);
    let broker = Mosquitto::start_with(Some(&files)).await;
    let worker_env = vec![
        ("INFERPUSH_SINKS", "pusher,mqtt".to_owned()),
        ("INFERPUSH_MQTT_URL", broker.url("mqtts")),
        ("INFERPUSH_MQTT_USERNAME", mosquitto::WORKER.0.to_owned()),
        ("INFERPUSH_MQTT_PASSWORD", mosquitto::WORKER.1.to_owned()),
        ("INFERPUSH_TLS_CA_FILE", files.ca.display().to_string()),
    ];
    let api_env = vec![("INFERPUSH_SINKS", "pusher,mqtt".to_owned())];
    let stack = Stack::start_with(StackOptions { worker_env, api_env, ..Default::default() }).await;
    let extra = [
        ("MQTT_URL", broker.url("mqtts")),
        ("MQTT_TOPIC", "inferpush/alice/events".into()),
        ("NODE_EXTRA_CA_CERTS", files.ca.display().to_string()),
    ];
    let mut alice = alice_subscribed(&stack, &broker, &extra).await;
    let task = submit(&stack, json!({"model": "echo", "input": {"text": "over tls"}})).await;
    let done =
        |lines: &[String]| received(lines).iter().any(|(_, t, e)| t == &task && e == "inference.completed");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done(&alice.transcript) && tokio::time::Instant::now() < deadline {
        let _ = alice.expect_line(&["message"], Duration::from_millis(500)).await;
    }
    let completed = done(&alice.transcript);
    assert!(completed, "{:?}\n{}\n{}", alice.transcript, broker.log(), stack.logs());
    let _ = std::fs::remove_dir_all(dir);
}

/// A receiver that accepts webhooks and never answers: its tasks are done as soon as their
/// webhooks are queued, so another user's tasks keep their latency on a worker with few
/// slots, and the attempts go on from the webhook queue with the same `webhook-id`.
#[tokio::test]
async fn a_webhook_receiver_that_never_answers_holds_no_worker_capacity() {
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang = format!("http://{}/hang", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let receiver = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut head = vec![0u8; 8192];
                let n = stream.read(&mut head).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&head[..n]).to_lowercase();
                if let Some(id) = head.lines().find_map(|l| l.strip_prefix("webhook-id:")) {
                    seen.lock().unwrap().push(id.trim().to_owned());
                }
                held.push(stream); // never answered, never closed
            }
        })
    };
    let stack = Stack::start_with(StackOptions { prefetch: 2, ..Default::default() }).await;
    for i in 0..12 {
        submit(&stack, json!({"model": "echo", "input": {"text": format!("h{i}")}, "webhook": hang})).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 12 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen.lock().unwrap().len() >= 12, "the first attempts went out");

    // Bob's tasks, each waited for, while alice's webhooks hang.
    let mut took = Vec::new();
    for i in 0..10 {
        let started = std::time::Instant::now();
        let answer = stack
            .http()
            .post(format!("{}/v1/inference", stack.api_url))
            .bearer_auth("dev-bob")
            .header("prefer", "wait=10")
            .json(&json!({"model": "echo", "input": {"text": format!("b{i}")}}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "bob's task finished within the wait");
        took.push(started.elapsed());
    }
    took.sort();
    println!("bob's tasks while 12 of alice's webhooks hang: median {:?}, max {:?}", took[5], took[9]);
    assert!(took[9] < Duration::from_secs(2), "bob waited {:?}", took[9]);

    // The hung attempts time out (15 s) and are tried again from the queue, same id.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let repeated = loop {
        let ids = seen.lock().unwrap().clone();
        let distinct: BTreeSet<&String> = ids.iter().collect();
        if distinct.len() < ids.len() {
            break true;
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(repeated, "no webhook was attempted again: {:?}", seen.lock().unwrap());
    receiver.abort();
}

/// The worker's webhook client ignores proxy settings (a proxy would resolve names past
/// the guard): with every proxy variable pointing at nothing, webhooks still arrive.
#[tokio::test]
async fn webhooks_go_direct_whatever_the_proxy_variables_say() {
    let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await;
    let dead_proxy = "http://127.0.0.1:1".to_owned();
    let worker_env = vec![
        ("HTTP_PROXY", dead_proxy.clone()),
        ("HTTPS_PROXY", dead_proxy.clone()),
        ("ALL_PROXY", dead_proxy.clone()),
        ("http_proxy", dead_proxy.clone()),
        ("all_proxy", dead_proxy),
        // The push server stays reachable: only webhooks are under test.
        ("NO_PROXY", "127.0.0.1".to_owned()),
        ("no_proxy", "127.0.0.1".to_owned()),
    ];
    let stack = Stack::start_with(StackOptions { worker_env, ..Default::default() }).await;
    // By name, so NO_PROXY does not spare it.
    let hook = receiver.url.replace("127.0.0.1", "localhost") + "/ok";
    let task = submit(&stack, json!({"model": "echo", "input": {"text": "p"}, "webhook": hook})).await;
    assert_eq!(finished(&stack, &task).await["status"], "succeeded");
    let delivered = |a: &[Attempt]| {
        a.iter().any(|x| {
            x.task_id.as_deref() == Some(task.as_str())
                && x.kind.as_deref() == Some("inference.completed")
                && x.status == 204
        })
    };
    receiver.wait_for(Duration::from_secs(20), delivered).await;
}

/// A generation's deltas over MQTT (QoS 1, as every event there: at least once, in order on
/// the topic; a repeat carries the seq it had) and its webhooks (`started` and `completed`
/// only: deltas are not sent to webhooks).
#[tokio::test]
async fn a_generations_deltas_reach_mqtt_in_order_and_its_webhooks_get_only_start_and_end() {
    let broker = Mosquitto::start().await;
    let receiver = WebhookReceiver::start(WEBHOOK_SECRET).await;
    let worker_env = vec![
        ("INFERPUSH_SINKS", "pusher,sse,webhook,mqtt".to_owned()),
        ("INFERPUSH_MQTT_URL", broker.worker_url()),
    ];
    let models = "smollm2-135m-instruct".to_owned();
    let stack = Stack::start_with(StackOptions { worker_env, models, ..Default::default() }).await;
    let mut alice = alice_subscribed(
        &stack,
        &broker,
        &[("MQTT_URL", broker.url("mqtt")), ("MQTT_TOPIC", "inferpush/alice/events".into())],
    )
    .await;
    let input = json!({"messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 32, "temperature": 0});
    let task = submit(
        &stack,
        json!({"model": "smollm2-135m-instruct", "input": input, "webhook": format!("{}/ok", receiver.url)}),
    )
    .await;
    let record = finished(&stack, &task).await;
    assert_eq!(record["status"], "succeeded", "{record}");
    let messages = |transcript: &[String]| -> Vec<Value> {
        transcript
            .iter()
            .filter_map(|line| line.strip_prefix("message "))
            .map(|json| serde_json::from_str::<Value>(json).expect("a message line"))
            .filter(|message| message["data"]["task_id"] == task.as_str())
            .collect()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !messages(&alice.transcript).iter().any(|m| m["event"] == "inference.completed") {
        assert!(tokio::time::Instant::now() < deadline, "{:?}\n{}", alice.transcript, stack.logs());
        let _ = alice.expect_line(&["message"], Duration::from_millis(500)).await;
    }
    let mut seqs = Vec::new();
    let mut text = String::new();
    for message in messages(&alice.transcript).iter().filter(|m| m["event"] == "inference.delta") {
        let seq = message["data"]["seq"].as_u64().unwrap();
        if seqs.last().is_some_and(|last| seq <= *last) {
            continue; // a QoS 1 repeat
        }
        seqs.push(seq);
        text.push_str(message["data"]["delta"].as_str().unwrap());
    }
    assert!(seqs.len() >= 2, "{seqs:?}");
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "every delta, in order");
    assert_eq!(text, record["output"]["text"].as_str().unwrap(), "the deltas add up to the text");

    let hooked = |attempts: &[Attempt]| {
        attempts
            .iter()
            .any(|a| a.task_id.as_deref() == Some(&task) && a.kind.as_deref() == Some("inference.completed"))
    };
    receiver.wait_for(Duration::from_secs(30), hooked).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kinds: BTreeSet<String> = receiver
        .attempts()
        .into_iter()
        .filter(|a| a.task_id.as_deref() == Some(&task))
        .filter_map(|a| a.kind)
        .collect();
    assert_eq!(kinds, BTreeSet::from(["inference.started".to_owned(), "inference.completed".to_owned()]));
}
