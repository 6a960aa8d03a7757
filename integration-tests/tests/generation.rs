//! Generated text end to end (issue 29), with SmolLM2-135M-Instruct on a real worker:
//! real pusher-js clients and OpenAI's SDK (`node/generation.test.mjs`), the server-sent
//! events stream with its `Last-Event-ID`, and a prompt that leaves no room for its
//! `max_tokens` refused before it is queued.

use std::time::Duration;

use inferpush_integration_tests::node::run_node_tests;
use inferpush_integration_tests::sse::{self, SseEvent};
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::{Value, json};

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
