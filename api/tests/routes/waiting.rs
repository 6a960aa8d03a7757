//! `Prefer: wait` in process: the submit answers 201 with the finished task when it
//! finishes in time, else the usual 202 once the wait is over.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use inferpush_protocol::{SystemClock, TaskRecord, TaskStatus};
use inferpush_store::TaskStore;
use serde_json::json;

use super::accepted::in_process;

fn submit_waiting(prefer: &str) -> Request<Body> {
    Request::post("/v1/inference")
        .header(header::AUTHORIZATION, "Bearer dev-alice")
        .header(header::CONTENT_TYPE, "application/json")
        .header("prefer", prefer)
        .body(Body::from(json!({"model": "echo", "input": {"text": "hi"}}).to_string()))
        .unwrap()
}

/// Plays the worker: finishes the first task published with `output`, `after` it is queued.
pub(super) fn play_the_worker(
    it: &super::accepted::InProcess,
    output: serde_json::Value,
    after: Duration,
) -> tokio::task::JoinHandle<()> {
    let (store, queue) = (it.store.clone(), it.queue.clone());
    tokio::spawn(async move {
        loop {
            let task = queue.published.lock().unwrap().first().map(|(t, _, _)| t.clone());
            if let Some(task) = task {
                tokio::time::sleep(after).await;
                let running = TaskRecord::queued(&task).started(&SystemClock);
                store.transition(&running).await.unwrap();
                store.transition(&running.succeeded(output, 1, &SystemClock)).await.unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

#[tokio::test]
async fn a_task_finished_within_the_wait_is_answered_201_with_its_result() {
    let it = in_process();
    let worker = play_the_worker(&it, json!({"text": "hi"}), Duration::from_millis(200));
    let began = Instant::now();
    let (status, _, body, _) = super::send_to(it.state.clone(), submit_waiting("wait=3")).await;
    worker.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["output"]["text"], "hi");
    assert!(began.elapsed() < Duration::from_secs(2), "answered when done, not at the end of the wait");
}

#[tokio::test]
async fn a_task_not_finished_in_time_is_answered_202_after_the_wait() {
    let it = in_process();
    let response = inferpush_api::app(it.state.clone());
    let began = Instant::now();
    let answer = tower::ServiceExt::oneshot(response, submit_waiting("wait=1")).await.unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    assert_eq!(answer.headers()["preference-applied"], "wait=1");
    assert!(answer.headers().contains_key(header::LOCATION));
    let waited = began.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    let task = it.queue.published.lock().unwrap()[0].0.clone();
    let record = it.store.get(&task.user_id, task.task_id).await.unwrap().unwrap();
    assert_eq!(record.status, TaskStatus::Queued, "still accepted and queued");
}
