//! The Pusher publisher against a small local HTTP server that checks signatures the way
//! Soketi and Sockudo do and can be told to fail: retries, batching and splitting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use inferpush_protocol::event::{BatchEvent, BatchEvents};
use inferpush_protocol::{AppCredentials, SystemClock};
use inferpush_worker::delivery::PushError;
use inferpush_worker::delivery::publisher::{Publisher, PushTarget};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Fake {
    /// Answer 503 to this many calls first.
    fail_first: usize,
    /// Refuse any batch holding an event with this name.
    poison: Option<String>,
    calls: usize,
    /// Sizes of the accepted batches.
    accepted: Vec<usize>,
    events: Vec<BatchEvent>,
}

type Shared = Arc<Mutex<Fake>>;

fn credentials() -> AppCredentials {
    AppCredentials::new("app-1", "key-1", "secret-1")
}

async fn batch_events(
    State(fake): State<Shared>,
    Path(app_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> StatusCode {
    let pairs: Vec<(String, String)> = query.into_iter().collect();
    let path = format!("/apps/{app_id}/batch_events");
    if credentials().verify_rest("POST", &path, &pairs, &body).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let mut fake = fake.lock().unwrap();
    fake.calls += 1;
    if fake.calls <= fake.fail_first {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let batch: BatchEvents = serde_json::from_slice(&body).unwrap();
    if let Some(poison) = &fake.poison
        && batch.batch.iter().any(|e| &e.name == poison)
    {
        return StatusCode::PAYLOAD_TOO_LARGE;
    }
    fake.accepted.push(batch.batch.len());
    fake.events.extend(batch.batch);
    StatusCode::OK
}

async fn start(fake: Fake) -> (Shared, Publisher, CancellationToken) {
    start_with_limit(fake, 10).await
}

/// As [`start`], for a server that takes at most `max_batch_events` per call.
async fn start_with_limit(fake: Fake, max_batch_events: usize) -> (Shared, Publisher, CancellationToken) {
    let shared = Arc::new(Mutex::new(fake));
    let router =
        Router::new().route("/apps/{app_id}/batch_events", post(batch_events)).with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let abort = CancellationToken::new();
    let publisher = Publisher::spawn(
        PushTarget {
            base_url,
            credentials: credentials(),
            clock: Arc::new(SystemClock),
            trusted: Default::default(),
            max_batch_events,
        },
        2,
        abort.clone(),
    )
    .unwrap();
    (shared, publisher, abort)
}

fn event(name: &str, i: usize) -> BatchEvent {
    BatchEvent {
        channel: "private-inference.alice".into(),
        name: name.into(),
        data: format!("{{\"i\":{i}}}"),
    }
}

#[tokio::test]
async fn signed_events_are_delivered_in_batches_up_to_the_servers_limit() {
    // Soketi takes 10 events per call, Sockudo 100.
    for (limit, count) in [(10, 50), (100, 400)] {
        let (fake, publisher, _abort) = start_with_limit(Fake::default(), limit).await;
        let pushes = (0..count).map(|i| {
            let publisher = publisher.clone();
            tokio::spawn(async move { publisher.push(event("inference.completed", i)).await })
        });
        let pushes: Vec<_> = pushes.collect();
        for push in pushes {
            push.await.unwrap().unwrap();
        }
        let fake = fake.lock().unwrap();
        assert_eq!(fake.events.len(), count);
        assert!(fake.accepted.iter().all(|n| *n <= limit), "limit {limit}: {:?}", fake.accepted);
        let largest = fake.accepted.iter().copied().max().unwrap_or(0);
        assert!(largest > limit / 2, "limit {limit}, batches never filled: {:?}", fake.accepted);
    }
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered() {
    let (fake, publisher, _abort) = start(Fake { fail_first: 3, ..Default::default() }).await;
    publisher.push(event("inference.completed", 1)).await.unwrap();
    let fake = fake.lock().unwrap();
    assert_eq!(fake.calls, 4);
    assert_eq!(fake.events.len(), 1);
}

#[tokio::test]
async fn a_refused_event_does_not_sink_the_others_in_its_batch() {
    let fake = Fake { poison: Some("poison".into()), ..Default::default() };
    let (shared, publisher, _abort) = start(fake).await;
    let pushes: Vec<_> = (0..10)
        .map(|i| {
            let publisher = publisher.clone();
            let name = if i == 4 { "poison" } else { "inference.completed" };
            tokio::spawn(async move { publisher.push(event(name, i)).await })
        })
        .collect();
    let mut refused = 0;
    for push in pushes {
        match push.await.unwrap() {
            Ok(()) => {}
            Err(PushError::Rejected(_)) => refused += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(refused, 1);
    assert_eq!(shared.lock().unwrap().events.len(), 9);
}

#[tokio::test]
async fn abort_ends_retries_against_a_dead_server() {
    let (_fake, publisher, abort) = start(Fake { fail_first: usize::MAX, ..Default::default() }).await;
    let push = tokio::spawn(async move { publisher.push(event("inference.completed", 1)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    abort.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), push).await.unwrap().unwrap();
    assert_eq!(result, Err(PushError::Aborted));
}

#[tokio::test]
async fn a_push_nobody_waits_for_any_more_stops_being_retried() {
    let (fake, publisher, _abort) = start(Fake { fail_first: usize::MAX, ..Default::default() }).await;
    // The caller gives up (as the worker does at its push deadline): the push is dropped.
    let gave_up =
        tokio::time::timeout(Duration::from_millis(300), publisher.push(event("inference.completed", 1)));
    assert!(gave_up.await.is_err());
    // The call in progress may still finish (slowly, on a busy machine); after it, none.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let settled = fake.lock().unwrap().calls;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.lock().unwrap().calls, settled, "the server is still being called for an abandoned push");
}

#[tokio::test]
async fn an_error_in_a_200_answer_is_a_refusal_not_a_delivery() {
    // Soketi 1.6 answers a wrong secret with `200 {"error": …, "code": 401}`.
    let router = Router::new().route(
        "/apps/{app_id}/batch_events",
        post(|| async { r#"{"error":"The secret authentication failed","code":401}"# }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let target = PushTarget {
        base_url,
        credentials: credentials(),
        clock: Arc::new(SystemClock),
        trusted: Default::default(),
        max_batch_events: 10,
    };
    let publisher = Publisher::spawn(target, 1, CancellationToken::new()).unwrap();
    match publisher.push(event("inference.completed", 1)).await {
        Err(PushError::Rejected(reason)) => assert!(reason.contains("401"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
