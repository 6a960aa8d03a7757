//! Generated text end to end (issue 29), with SmolLM2-135M-Instruct on a real worker:
//! real pusher-js clients and OpenAI's SDK (`node/generation.test.mjs`), the server-sent
//! events stream with its `Last-Event-ID`, a prompt that leaves no room for its
//! `max_tokens` refused before it is queued, and `inferpush chat` writing the answer as it
//! is generated.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use inferpush_client::pusher::PusherClient;
use inferpush_client::transcript::{Applied, Transcript};
use inferpush_integration_tests::node::run_node_tests;
use inferpush_integration_tests::sse::{self, SseEvent};
use inferpush_integration_tests::{Stack, StackOptions};
use inferpush_protocol::{DeltaEvent, TaskStatus};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

const MODEL: &str = "smollm2-135m-instruct";

async fn stack() -> Stack {
    Stack::start_with(StackOptions { models: MODEL.into(), ..Default::default() }).await
}

#[tokio::test]
async fn pusher_js_and_openais_sdk_get_the_text_as_it_is_written() {
    let stack = stack().await;
    run_node_tests(&stack, "integration-tests/node/generation.test.mjs", &[]).await;
}

/// Events of one task's stream until its final one.
async fn until_final(events: &mut tokio::sync::mpsc::UnboundedReceiver<SseEvent>) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events.recv())
            .await
            .expect("the stream goes on")
            .expect("the stream ends only after the final event");
        let last = event.event == "inference.completed" || event.event == "inference.failed";
        seen.push(event);
        if last {
            return seen;
        }
    }
}

fn text_of(events: &[SseEvent]) -> String {
    events
        .iter()
        .filter(|e| e.event == "inference.delta")
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["delta"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn server_sent_events_carry_every_delta_with_an_id_and_resume_after_the_last_seen() {
    let stack = stack().await;
    let token = inferpush_integration_tests::stack::user_jwt("alice");
    let input = json!({"messages": [{"role": "user", "content": "Name three rivers."}], "max_tokens": 48, "temperature": 0});
    let (status, accepted) = stack.submit(&token, MODEL, input).await;
    assert_eq!(status, 202, "{accepted}");
    let url = format!("{}/v1/inference/{}/events", stack.api_url, accepted["task_id"].as_str().unwrap());
    let mut stream = sse::open(stack.http(), &url, &token, None).await.unwrap();
    let events = until_final(&mut stream).await;
    let deltas: Vec<&SseEvent> = events.iter().filter(|e| e.event == "inference.delta").collect();
    assert!(deltas.len() >= 2, "{events:?}");
    assert!(deltas.iter().all(|e| e.id.is_some()), "every delta has an id");
    let completed: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(text_of(&events), completed["output"]["text"].as_str().unwrap());

    // Back after the first delta: the rest, none twice, then the end.
    let first = deltas[0].id.clone().unwrap();
    let mut resumed = sse::open(stack.http(), &url, &token, Some(&first)).await.unwrap();
    let rest = until_final(&mut resumed).await;
    let first_text: Value = serde_json::from_str(&deltas[0].data).unwrap();
    assert_eq!(format!("{}{}", first_text["delta"].as_str().unwrap(), text_of(&rest)), text_of(&events));
}

#[tokio::test]
async fn a_prompt_with_no_room_for_its_max_tokens_is_refused_naming_both_sizes() {
    let stack = stack().await;
    let token = inferpush_integration_tests::stack::user_jwt("alice");
    let long = "word ".repeat(1700);
    let input = json!({"prompt": long, "max_tokens": 512});
    let (status, body) = stack.submit(&token, MODEL, input).await;
    assert_eq!(status, 422, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("512") && detail.contains("2048"), "{body}");
    let (status, body) =
        stack.submit(&token, MODEL, json!({"prompt": "Once upon a time", "max_tokens": 513})).await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn the_cli_chat_writes_the_answer_while_it_is_being_generated() {
    let stack = stack().await;
    let prompt = "Write a long story about a dragon who learns to read.";
    let mut chat = stack
        .cli(Some("dev-alice"))
        .args(["chat", prompt, "--temperature", "0", "--max-tokens", "160"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting inferpush chat");
    let mut stdout = chat.stdout.take().unwrap();
    let mut written = vec![0; 4096];
    let first =
        tokio::time::timeout(Duration::from_secs(60), stdout.read(&mut written)).await.unwrap().unwrap();
    assert!(first > 0, "the answer's first words");
    // The first words are out while the task still runs.
    let tasks = stack.tasks_since("dev-alice", 0, 10).await;
    let statuses: Vec<TaskStatus> = tasks.iter().map(|task| task.status).collect();
    assert_eq!(statuses, [TaskStatus::Running], "{tasks:?}");
    written.truncate(first);
    stdout.read_to_end(&mut written).await.unwrap();
    let output = chat.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("succeeded · smollm2-135m-instruct") && stderr.contains("finish: "), "{stderr}");
    let (_, record) = stack.task("dev-alice", &tasks[0].task_id.to_string()).await;
    let text = String::from_utf8(written).unwrap();
    assert_eq!(text.strip_suffix('\n'), record["output"]["text"].as_str(), "stdout is the answer, once");
}

/// The next event of `task_id` on `client`'s channel: (name, data).
async fn next_of(client: &mut PusherClient, task_id: &str) -> (String, Value) {
    loop {
        let message = client.next(Duration::from_secs(60)).await.expect("the task's events go on");
        let data = message.json();
        if data["task_id"] == task_id {
            return (message.event, data);
        }
    }
}

/// How the worker running a generation goes away.
enum Departure {
    /// SIGKILL: the broker takes the task back when the connection drops.
    Killed,
    /// SIGTERM with a grace period shorter than the generation: the worker stops it and
    /// hands the task back itself.
    GraceOver,
}

#[tokio::test]
async fn a_generation_whose_worker_was_killed_starts_again_as_a_new_attempt_never_mixed() {
    starts_again_as_a_new_attempt(Departure::Killed).await;
}

#[tokio::test]
async fn a_worker_whose_grace_runs_out_hands_its_generation_back_to_start_again() {
    starts_again_as_a_new_attempt(Departure::GraceOver).await;
}

async fn starts_again_as_a_new_attempt(departure: Departure) {
    let mut stack = Stack::start_with(StackOptions {
        models: MODEL.into(),
        shutdown_grace: "500ms".into(),
        ..Default::default()
    })
    .await;
    let mut client = stack.subscribed_client("dev-alice", "private-inference.alice").await;
    let input = json!({"messages": [{"role": "user", "content": "Tell me a long story about a brave knight."}], "max_tokens": 200, "temperature": 0});
    let (status, accepted) = stack.submit("dev-alice", MODEL, input).await;
    assert_eq!(status, 202, "{accepted}");
    let task_id = accepted["task_id"].as_str().unwrap().to_owned();
    let mut deltas: Vec<DeltaEvent> = Vec::new();
    while deltas.len() < 3 {
        let (event, data) = next_of(&mut client, &task_id).await;
        if event == "inference.delta" {
            deltas.push(serde_json::from_value(data).unwrap());
        }
    }
    let left = std::time::Instant::now();
    match departure {
        Departure::Killed => stack.kill_worker().await,
        Departure::GraceOver => {
            let log = stack.stop_worker().await;
            let took = left.elapsed();
            assert!(took < Duration::from_secs(10), "the worker left {took:?} after SIGTERM");
            assert!(log.contains("handing the task back"), "{log}");
        }
    }
    stack.start_worker().await;
    let completed = loop {
        let (event, data) = next_of(&mut client, &task_id).await;
        match event.as_str() {
            "inference.delta" => deltas.push(serde_json::from_value(data).unwrap()),
            "inference.completed" => break data,
            "inference.failed" => panic!("{data}\n{}", stack.logs()),
            _ => {}
        }
    };
    let attempts: Vec<u64> = deltas.iter().map(|d| d.attempt).collect::<BTreeSet<_>>().into_iter().collect();
    assert_eq!(attempts.len(), 2, "the deltas of two attempts: {attempts:?}");
    let second: Vec<&DeltaEvent> = deltas.iter().filter(|d| d.attempt == attempts[1]).collect();
    assert_eq!(
        second.iter().map(|d| d.seq).collect::<Vec<_>>(),
        (1..=second.len() as u64).collect::<Vec<_>>()
    );
    // A client that applies what it heard, in the order heard, shows the second attempt's text only.
    let mut transcript = Transcript::default();
    let mut restarts = 0;
    for delta in &deltas {
        if transcript.apply_delta(delta) == Applied::Restarted {
            restarts += 1;
        }
    }
    assert_eq!(restarts, 2);
    assert_eq!(transcript.text, completed["output"]["text"].as_str().unwrap());
}
