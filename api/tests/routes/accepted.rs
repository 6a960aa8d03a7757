//! The accepted path in process: submit, status, cancel and list on the in-memory store
//! and a queue that records what it is handed (or refuses, to test outages), with a clock
//! the test sets. The same paths run against RabbitMQ and Redis in `integration-tests/`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use inferpush_api::AppState;
use inferpush_api::queue::{QueueError, TaskQueue};
use inferpush_protocol::http::{Accepted, SubmitRequest};
use inferpush_protocol::{Lane, ManualClock, TaskEnvelope, TaskRecord, TaskStatus};
use inferpush_store::{Admission, Idempotency, MemoryTaskStore, TaskStore};
use serde_json::json;
use tower::ServiceExt;

/// A queue that keeps what it is handed, or refuses as an unreachable broker would, or
/// loses what it is handed without a word (a publish whose confirm never comes).
#[derive(Default)]
pub(super) struct RecordingQueue {
    pub(super) published: Mutex<Vec<(TaskEnvelope, String, Lane)>>,
    down: AtomicBool,
    loses: AtomicBool,
}

#[async_trait]
impl TaskQueue for RecordingQueue {
    async fn publish(&self, task: &TaskEnvelope, traceparent: &str, lane: Lane) -> Result<(), QueueError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(QueueError::Unreachable("connection refused".into()));
        }
        if self.loses.load(Ordering::SeqCst) {
            return Err(QueueError::Unconfirmed("no confirm in time".into()));
        }
        self.published.lock().unwrap().push((task.clone(), traceparent.to_owned(), lane));
        Ok(())
    }

    async fn is_ready(&self) -> bool {
        !self.down.load(Ordering::SeqCst)
    }
}

pub(super) struct InProcess {
    pub(super) state: AppState,
    pub(super) queue: Arc<RecordingQueue>,
    pub(super) store: Arc<MemoryTaskStore>,
    clock: Arc<ManualClock>,
}

const NOW_MS: u64 = 1_800_000_000_000;

pub(super) fn in_process() -> InProcess {
    let queue = Arc::new(RecordingQueue::default());
    let store = Arc::new(MemoryTaskStore::new());
    let clock = Arc::new(ManualClock::at(NOW_MS));
    let state =
        AppState { queue: queue.clone(), store: store.clone(), clock: clock.clone(), ..super::state() };
    InProcess { state, queue, store, clock }
}

fn submit_with_key(idempotency_key: &str) -> Request<Body> {
    submit_as("alice", idempotency_key)
}

fn submit_as(user: &str, idempotency_key: &str) -> Request<Body> {
    Request::post("/v1/inference")
        .header(header::AUTHORIZATION, format!("Bearer dev-{user}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", idempotency_key)
        .body(Body::from(json!({"model": "echo", "input": {"n": 1}}).to_string()))
        .unwrap()
}

pub(super) fn as_alice(method: &str, uri: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, "Bearer dev-alice")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn an_accepted_task_is_recorded_queued_then_published_stamped_by_the_clock() {
    let it = in_process();
    let (status, _, body, _) = super::send_to(it.state.clone(), submit_with_key("k1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let accepted: Accepted = serde_json::from_value(body).unwrap();
    assert_eq!(accepted.status, TaskStatus::Queued);
    assert_eq!(accepted.channel.to_string(), "private-inference.alice");

    let published = it.queue.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    let (task, traceparent, lane) = &published[0];
    assert_eq!(*lane, Lane::Main, "a user's first task takes the main lane");
    assert_eq!((task.task_id, task.submitted_at_ms), (accepted.task_id, NOW_MS));
    assert!(task.channel.carries_results_of("alice"));
    assert!(traceparent.starts_with(&format!("00-{}-", task.task_id.0.simple())), "{traceparent}");
    let record = it.store.get(&task.user_id, task.task_id).await.unwrap().unwrap();
    assert_eq!(record, TaskRecord::queued(task));

    let (status, _, read, _) = super::send_to(it.state.clone(), as_alice("GET", &accepted.status_url)).await;
    assert_eq!((status, read["status"].as_str()), (StatusCode::OK, Some("queued")));
}

#[tokio::test]
async fn a_replayed_idempotency_key_answers_the_first_task_and_publishes_once() {
    let it = in_process();
    let (_, _, first, _) = super::send_to(it.state.clone(), submit_with_key("same")).await;
    let (status, _, again, _) = super::send_to(it.state.clone(), submit_with_key("same")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(first["task_id"], again["task_id"]);
    assert_eq!(it.queue.published.lock().unwrap().len(), 1);
    assert_eq!(it.store.len(), 1);
}

#[tokio::test]
async fn a_replay_publishes_a_task_whose_first_request_died_between_record_and_queue() {
    let it = in_process();
    // What a replica killed after recording and before publishing leaves behind.
    let channel =
        inferpush_protocol::InferenceChannel::new(inferpush_protocol::channel::ChannelKind::Private, "alice")
            .unwrap();
    let orphan = TaskEnvelope::new("alice", "echo", json!({"n": 1}), channel, NOW_MS);
    let request = SubmitRequest::new("echo", json!({"n": 1})).fingerprint();
    let key = Idempotency { key: "died", request: &request };
    it.store.create(&TaskRecord::queued(&orphan), Some(key), Admission::in_flight(100)).await.unwrap();

    // While the first request could still be publishing, a replay is told to come back.
    it.clock.advance(1_000);
    let response = inferpush_api::app(it.state.clone()).oneshot(submit_with_key("died")).await.unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "1");
    assert!(it.queue.published.lock().unwrap().is_empty());

    // Past the longest a publish can take, the replay publishes it, under its own id, once.
    it.clock.advance(30_000);
    for _ in 0..2 {
        let (status, _, body, _) = super::send_to(it.state.clone(), submit_with_key("died")).await;
        assert_eq!(
            (status, body["task_id"].as_str()),
            (StatusCode::ACCEPTED, Some(&*orphan.task_id.to_string()))
        );
    }
    let published = it.queue.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1, "published once, then the key is confirmed");
    assert_eq!((published[0].0.task_id, published[0].0.submitted_at_ms), (orphan.task_id, NOW_MS));
    assert_eq!(it.store.len(), 1);
}

#[tokio::test]
async fn a_replayed_key_with_another_request_is_refused_and_a_replay_reports_the_current_status() {
    let it = in_process();
    super::send_to(it.state.clone(), submit_with_key("k")).await;
    let other = Request::post("/v1/inference")
        .header(header::AUTHORIZATION, "Bearer dev-alice")
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", "k")
        .body(Body::from(json!({"model": "all-minilm-l6-v2", "input": {"texts": ["hello"]}}).to_string()))
        .unwrap();
    let (status, _, body, _) = super::send_to(it.state.clone(), other).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"), "{body}");
    let other_input = Request::post("/v1/inference")
        .header(header::AUTHORIZATION, "Bearer dev-alice")
        .header(header::CONTENT_TYPE, "application/json")
        .header("idempotency-key", "k")
        .body(Body::from(json!({"model": "echo", "input": {"n": 2}}).to_string()))
        .unwrap();
    let (status, _, _, _) = super::send_to(it.state.clone(), other_input).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "same model, another input");
    assert_eq!(it.queue.published.lock().unwrap().len(), 1);

    // The task moves on; a replay says where it stands now.
    let (task, _, _) = it.queue.published.lock().unwrap()[0].clone();
    let clock = it.clock.as_ref();
    it.store.transition(&TaskRecord::queued(&task).started(clock)).await.unwrap();
    let (status, _, body, _) = super::send_to(it.state.clone(), submit_with_key("k")).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::ACCEPTED, Some("running")), "{body}");
}

fn submit_echo(input: serde_json::Value) -> Request<Body> {
    Request::post("/v1/inference")
        .header(header::AUTHORIZATION, "Bearer dev-alice")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"model": "echo", "input": input}).to_string()))
        .unwrap()
}

#[tokio::test]
async fn what_one_user_may_store_is_bounded_by_input_size_and_result_quota() {
    let it = in_process();
    let state = AppState { result_quota_bytes: 3_200, max_body_bytes: 1 << 20, ..it.state.clone() };
    let kilobyte = json!({"text": "x".repeat(1_000)});
    for _ in 0..2 {
        let (status, _, body, _) = super::send_to(state.clone(), submit_echo(kilobyte.clone())).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let response = inferpush_api::app(state.clone()).oneshot(submit_echo(kilobyte.clone())).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let (_, _, body, _) = super::send_to(state.clone(), submit_echo(kilobyte)).await;
    assert!(body["detail"].as_str().unwrap().contains("result storage quota"), "{body}");
    assert_eq!(it.queue.published.lock().unwrap().len(), 2);

    // Over the model's own input limit: a 413 that names the model and both sizes.
    let huge = json!({"text": "x".repeat(600_000)});
    let (status, _, body, _) = super::send_to(state.clone(), submit_echo(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("model `echo` takes at most 524288"), "{body}");
    // A result larger than the whole quota could never pass: 413, not 429.
    let (status, _, body, _) = super::send_to(state, submit_echo(json!({"text": "x".repeat(5_000)}))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

#[tokio::test]
async fn a_queue_outage_is_a_503_that_leaves_nothing_behind() {
    let it = in_process();
    it.queue.down.store(true, Ordering::SeqCst);
    let (status, _, body, _) = super::send_to(it.state.clone(), submit_with_key("k")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("nothing was queued"), "{body}");
    assert!(it.store.is_empty(), "the queued record was removed");
    assert_eq!(it.store.in_flight("alice"), 0, "and its in-flight slot freed");

    it.queue.down.store(false, Ordering::SeqCst);
    let (status, _, _, _) = super::send_to(it.state.clone(), submit_with_key("k")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the idempotency key is free again");
}

#[tokio::test]
async fn a_lost_confirm_is_a_503_naming_the_task_that_the_follow_up_then_queues_once() {
    let it = in_process();
    it.queue.loses.store(true, Ordering::SeqCst);
    let (status, _, body, _) = super::send_to(it.state.clone(), submit_with_key("k")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let task_id = body["task_id"].as_str().expect("the 503 names the task").to_owned();
    assert_eq!(body["status_url"], format!("/v1/inference/{task_id}"));
    assert_eq!(it.store.in_flight("alice"), 1, "the record stays, holding its slot");

    it.queue.loses.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while it.queue.published.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the follow-up published the task");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(it.queue.published.lock().unwrap()[0].0.task_id.to_string(), task_id);
    let (status, _, replayed, _) = super::send_to(it.state.clone(), submit_with_key("k")).await;
    assert_eq!((status, replayed["task_id"].as_str()), (StatusCode::ACCEPTED, Some(task_id.as_str())));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(it.queue.published.lock().unwrap().len(), 1, "published once: the follow-up stopped");
}

#[tokio::test]
async fn past_their_fair_share_a_users_tasks_take_the_bulk_lane_until_some_finish() {
    let it = in_process();
    let state = AppState { fair_share: 2, ..it.state.clone() };
    for n in 0..4 {
        let (status, _, body, _) = super::send_to(state.clone(), submit_with_key(&format!("k{n}"))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, _, _, _) = super::send_to(state.clone(), submit_as("bob", "b0")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let published = it.queue.published.lock().unwrap().clone();
    let lanes: Vec<Lane> = published.iter().map(|(_, _, lane)| *lane).collect();
    assert_eq!(
        lanes,
        [Lane::Main, Lane::Main, Lane::Bulk, Lane::Bulk, Lane::Main],
        "bob is within his share"
    );

    for (task, _, _) in &published[..3] {
        let done =
            TaskRecord::queued(task).started(it.clock.as_ref()).succeeded(json!({}), 1, it.clock.as_ref());
        it.store.transition(&done).await.unwrap();
    }
    super::send_to(state.clone(), submit_with_key("k4")).await;
    assert_eq!(it.queue.published.lock().unwrap()[5].2, Lane::Main, "alice is back within her share");
}

#[tokio::test]
async fn a_long_generation_counts_one_slot_per_64_tokens_of_its_max_tokens_toward_the_fair_share() {
    let it = in_process();
    let state = AppState { fair_share: 16, ..it.state.clone() };
    let generate = |user: &str, max_tokens: u64| {
        let input = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens});
        Request::post("/v1/inference")
            .header(header::AUTHORIZATION, format!("Bearer dev-{user}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"model": "smollm2-135m-instruct", "input": input}).to_string()))
            .unwrap()
    };
    for request in
        [generate("alice", 512), generate("alice", 500), generate("alice", 1), submit_as("alice", "e")]
    {
        let (status, _, body, _) = super::send_to(state.clone(), request).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    super::send_to(state.clone(), generate("bob", 64)).await;
    let published = it.queue.published.lock().unwrap().clone();
    let slots: Vec<u64> = published.iter().map(|(task, _, _)| task.slots).collect();
    assert_eq!(slots, [8, 8, 1, 1, 1]);
    let lanes: Vec<Lane> = published.iter().map(|(_, _, lane)| *lane).collect();
    assert_eq!(
        lanes,
        [Lane::Main, Lane::Main, Lane::Bulk, Lane::Bulk, Lane::Main],
        "two 512-token answers fill alice's share of 16; bob is within his"
    );
    let record = it.store.get(&published[0].0.user_id, published[0].0.task_id).await.unwrap().unwrap();
    assert_eq!(record.slots, 8, "the record frees what the task took");
}

#[tokio::test]
async fn a_store_outage_is_the_same_503_on_every_route_and_publishes_nothing() {
    let it = in_process();
    let (_, _, accepted, _) = super::send_to(it.state.clone(), submit_with_key("k")).await;
    let url = accepted["status_url"].as_str().unwrap().to_owned();
    it.store.set_available(false);
    for request in [
        submit_with_key("other"),
        as_alice("GET", &url),
        as_alice("DELETE", &url),
        as_alice("GET", "/v1/inference?since=0"),
    ] {
        let (status, _, body, _) = super::send_to(it.state.clone(), request).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["detail"], "the task store is unavailable; nothing was changed, retry later");
    }
    assert_eq!(it.queue.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_queued_task_is_cancelled_once_and_then_listed_as_cancelled() {
    let it = in_process();
    let (_, _, accepted, _) = super::send_to(it.state.clone(), submit_with_key("k")).await;
    let url = accepted["status_url"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, _, body, _) = super::send_to(it.state.clone(), as_alice("DELETE", &url)).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{body}");
        assert_eq!(body["finished_at_ms"], NOW_MS);
        assert_eq!(body["error"]["code"], "cancelled");
    }
    assert_eq!(it.store.in_flight("alice"), 0);
    let (_, _, list, _) = super::send_to(it.state.clone(), as_alice("GET", "/v1/inference?since=0")).await;
    assert_eq!(list["tasks"][0]["status"], "cancelled");
}
