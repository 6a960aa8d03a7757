//! Where a task's events go, in process: the choice validated at submit (422s that name
//! the problem, nothing recorded), the 202 and `GET /v1/delivery` saying which sinks
//! apply, and the server-sent event streams replaying by `Last-Event-ID` from the log
//! and then following it live, each event once.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use inferpush_protocol::TaskId;
use inferpush_protocol::http::Accepted;
use inferpush_store::TaskStore;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::accepted::{as_alice, in_process};

fn submit(body: Value) -> Request<Body> {
    Request::post("/v1/inference")
        .header(header::AUTHORIZATION, "Bearer dev-alice")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn a_bad_choice_is_a_422_that_names_it_and_records_nothing() {
    let it = in_process();
    let cases = [
        (json!({"sinks": ["mqtt"]}), "`mqtt`"),
        (json!({"sinks": []}), "empty"),
        (json!({"sinks": ["pigeon"]}), "pigeon"),
        (json!({"webhook_events_filter": ["completed"]}), "needs a `webhook`"),
        (json!({"webhook": "http://127.0.0.1:9/hook"}), "INFERPUSH_WEBHOOK_ALLOWED_HOSTS"),
        (json!({"webhook": "not a url"}), "`webhook`"),
        (json!({"webhook": "https://hooks.example.com/", "webhook_events_filter": ["finished"]}), "finished"),
        (json!({"webhook": "https://hooks.example.com/", "sinks": ["pusher"]}), "leaves `webhook` out"),
    ];
    for (choice, named) in cases {
        let mut body = json!({"model": "echo", "input": {"text": "hi"}});
        body.as_object_mut().unwrap().extend(choice.as_object().unwrap().clone());
        let (status, _, problem, _) = super::send_to(it.state.clone(), submit(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains(named), "{body}: {problem}");
    }
    assert!(it.queue.published.lock().unwrap().is_empty(), "nothing queued");
}

#[tokio::test]
async fn the_answer_says_where_the_events_go_and_the_task_keeps_its_choice() {
    let it = in_process();
    let plain = json!({"model": "echo", "input": {"text": "hi"}});
    let (status, _, body, _) = super::send_to(it.state.clone(), submit(plain)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let accepted: Accepted = serde_json::from_value(body).unwrap();
    assert_eq!(
        serde_json::to_value(&accepted.sinks).unwrap(),
        json!(["pusher", "sse"]),
        "no URL, no webhook"
    );
    assert_eq!(accepted.events_url, Some(format!("/v1/inference/{}/events", accepted.task_id)));

    let hooked = json!({"model": "echo", "input": {"text": "hi"}, "webhook": "https://hooks.example.com/x",
        "webhook_events_filter": ["completed", "failed"], "sinks": ["webhook"]});
    let (status, _, body, _) = super::send_to(it.state.clone(), submit(hooked)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["sinks"], json!(["webhook"]));
    assert!(body.get("events_url").is_none());
    let published = it.queue.published.lock().unwrap().clone();
    let delivery = &published[1].0.delivery;
    assert_eq!(delivery.webhook.as_deref(), Some("https://hooks.example.com/x"));
    let (_, _, record, _) = super::send_to(
        it.state.clone(),
        as_alice("GET", &format!("/v1/inference/{}", published[1].0.task_id)),
    )
    .await;
    assert_eq!(record["delivery"]["webhook_events_filter"], json!(["completed", "failed"]));

    let (status, _, options, _) = super::send_to(it.state.clone(), as_alice("GET", "/v1/delivery")).await;
    assert_eq!(status, StatusCode::OK);
    let sinks = options["sinks"].as_array().unwrap();
    let on: Vec<_> =
        sinks.iter().filter(|s| s["enabled"] == true).map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(on, ["pusher", "sse", "webhook"]);
    let mqtt = sinks.iter().find(|s| s["name"] == "mqtt").unwrap();
    assert_eq!(mqtt["address"], "inferpush/alice/events");
}

/// Reads server-sent events off a response body until `count` with an id have come.
async fn read_events(body: Body, count: usize) -> Vec<(String, String, String)> {
    let mut stream = body.into_data_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < count {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {events:?} in time; text so far: {text}"))
            .expect("the stream ended early")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).map(|v| v.trim().to_owned())
            };
            if let (Some(id), Some(event), Some(data)) = (field("id"), field("event"), field("data")) {
                events.push((id, event, data));
            }
        }
    }
    events
}

/// The whole text of a stream that ends (within 5 s).
async fn read_to_end(body: Body) -> String {
    let mut stream = body.into_data_stream();
    let mut text = String::new();
    while let Some(chunk) =
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("ends in time")
    {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    text
}

/// An in-process api on the real clock (the memory log stamps ids with the real time) and
/// one echo task alice submitted to it.
async fn submitted_now() -> (super::accepted::InProcess, Accepted) {
    let mut it = in_process();
    it.state.clock = std::sync::Arc::new(inferpush_protocol::SystemClock);
    let (status, _, body, _) =
        super::send_to(it.state.clone(), submit(json!({"model": "echo", "input": {"text": "hi"}}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    (it, serde_json::from_value(body).unwrap())
}

fn events_request(uri: &str, last_event_id: Option<&str>) -> Request<Body> {
    let mut request = Request::get(uri).header(header::AUTHORIZATION, "Bearer dev-alice");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_stream_replays_after_the_last_event_id_then_follows_live_each_event_once() {
    let it = in_process();
    let log = it.state.delivery.events.clone();
    let (one, two) = (TaskId::new_v7(), TaskId::new_v7());
    let first = log.append("alice", one, "inference.started", r#"{"n":1}"#).await.unwrap();
    log.append("alice", one, "inference.completed", r#"{"n":2}"#).await.unwrap();
    log.append("bob", two, "inference.completed", r#"{"bob":true}"#).await.unwrap();

    let app = inferpush_api::app(it.state.clone());
    let response = app.clone().oneshot(events_request("/v1/events", Some(&first.to_string()))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "text/event-stream");
    let body = response.into_body();
    let appender = {
        let log = log.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            // A repeat of a logged event is the same entry: not sent again.
            log.append("alice", one, "inference.completed", r#"{"n":2}"#).await.unwrap();
            log.append("alice", two, "inference.started", r#"{"n":3}"#).await.unwrap();
        })
    };
    let events = read_events(body, 2).await;
    appender.await.unwrap();
    let seen: Vec<_> = events.iter().map(|(_, e, d)| (e.as_str(), d.as_str())).collect();
    assert_eq!(seen, [("inference.completed", r#"{"n":2}"#), ("inference.started", r#"{"n":3}"#)]);
    assert!(events[0].0 < events[1].0 || events[0].0.len() < events[1].0.len(), "ids increase");

    // One task's stream: from its first event, ending after its final one.
    let response =
        app.clone().oneshot(events_request(&format!("/v1/inference/{one}/events"), None)).await.unwrap();
    // Not alice's task in the store: a 404 like every foreign or unknown task.
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let bad = app.oneshot(events_request("/v1/events", Some("yesterday"))).await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn one_tasks_stream_starts_at_its_first_event_and_ends_after_its_final_one() {
    let (it, accepted) = submitted_now().await;
    let log = it.state.delivery.events.clone();
    log.append("alice", accepted.task_id, "inference.started", "{}").await.unwrap();
    log.append("alice", TaskId::new_v7(), "inference.completed", r#"{"other":1}"#).await.unwrap();
    let app = inferpush_api::app(it.state.clone());
    let response = app.oneshot(events_request(accepted.events_url.as_deref().unwrap(), None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let task = accepted.task_id;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.append("alice", task, "inference.completed", r#"{"mine":1}"#).await.unwrap();
    });
    let text = read_to_end(response.into_body()).await;
    let names: Vec<_> = text.lines().filter_map(|l| l.strip_prefix("event:")).map(str::trim).collect();
    assert_eq!(names, ["inference.started", "inference.completed"], "{text}");
    assert!(text.contains(r#"{"mine":1}"#) && !text.contains("other"), "{text}");
}

#[tokio::test]
async fn a_user_holds_a_bounded_number_of_streams() {
    let it = in_process();
    let app = inferpush_api::app(it.state.clone());
    let mut open = Vec::new();
    for _ in 0..4 {
        let response = app.clone().oneshot(events_request("/v1/events", None)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response);
    }
    let refused = app.clone().oneshot(events_request("/v1/events", None)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key(header::RETRY_AFTER));
    drop(open.pop());
    let again = app.oneshot(events_request("/v1/events", None)).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK, "closing a stream frees its slot");
}

#[tokio::test]
async fn a_long_replay_comes_page_by_page_in_order() {
    let it = in_process();
    let log = it.state.delivery.events.clone();
    let mut ids = Vec::new();
    for n in 0..250 {
        ids.push(
            log.append("alice", TaskId::new_v7(), "inference.completed", &format!(r#"{{"n":{n}}}"#))
                .await
                .unwrap(),
        );
    }
    let app = inferpush_api::app(it.state.clone());
    let response = app.oneshot(events_request("/v1/events", Some(&ids[0].to_string()))).await.unwrap();
    let events = read_events(response.into_body(), 249).await;
    let sent: Vec<String> = events.iter().map(|(id, _, _)| id.clone()).collect();
    let expected: Vec<String> = ids[1..].iter().map(ToString::to_string).collect();
    assert_eq!(sent, expected, "every event after the last one seen, once, in order");
}

#[tokio::test]
async fn a_finished_tasks_stream_finds_its_final_event_past_the_first_page() {
    let (it, accepted) = submitted_now().await;
    let log = it.state.delivery.events.clone();
    log.append("alice", accepted.task_id, "inference.started", "{}").await.unwrap();
    for _ in 0..150 {
        log.append("alice", TaskId::new_v7(), "inference.completed", r#"{"other":1}"#).await.unwrap();
    }
    log.append("alice", accepted.task_id, "inference.completed", r#"{"mine":1}"#).await.unwrap();
    let task = it.queue.published.lock().unwrap()[0].0.clone();
    let clock = inferpush_protocol::SystemClock;
    let running = inferpush_protocol::TaskRecord::queued(&task).started(&clock);
    it.store.transition(&running).await.unwrap();
    it.store.transition(&running.succeeded(json!({"mine": 1}), 1, &clock)).await.unwrap();

    let app = inferpush_api::app(it.state.clone());
    let response = app.oneshot(events_request(accepted.events_url.as_deref().unwrap(), None)).await.unwrap();
    let text = read_to_end(response.into_body()).await;
    let ids = text.lines().filter(|l| l.starts_with("id:")).count();
    let names: Vec<_> = text.lines().filter_map(|l| l.strip_prefix("event:")).map(str::trim).collect();
    assert_eq!(names, ["inference.started", "inference.completed"], "{text}");
    assert_eq!(ids, 2, "the logged final event, with its id, not one rebuilt: {text}");
    assert!(text.contains(r#"{"mine":1}"#) && !text.contains("other"));
}
