//! `POST /v1/embeddings` in process: OpenAI's shapes for answers and errors, the wait
//! and its 504, `Prefer: respond-async`, and that bad requests publish nothing.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine as _;
use inferpush_protocol::TaskStatus;
use inferpush_store::TaskStore;
use serde_json::{Value, json};

use super::accepted::in_process;
use super::waiting::play_the_worker;

fn embeddings(body: Value, prefer: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/v1/embeddings")
        .header(header::AUTHORIZATION, "Bearer dev-alice")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(prefer) = prefer {
        request = request.header("prefer", prefer);
    }
    request.body(Body::from(body.to_string())).unwrap()
}

fn output() -> Value {
    json!({"embeddings": [vec![0.5; 384], vec![-0.25; 384]], "dimensions": 384, "tokens": 11})
}

#[tokio::test]
async fn the_result_is_answered_in_openais_shape_in_floats_and_base64() {
    for format in ["float", "base64"] {
        let it = in_process();
        let worker = play_the_worker(&it, output(), Duration::from_millis(50));
        let body = json!({"model": "all-minilm-l6-v2", "input": ["one", "two"], "encoding_format": format});
        let (status, _, answer, text) = super::send_to(it.state.clone(), embeddings(body, None)).await;
        worker.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(answer["object"], "list");
        assert_eq!(answer["model"], "all-minilm-l6-v2");
        assert_eq!(answer["usage"], json!({"prompt_tokens": 11, "total_tokens": 11}));
        assert_eq!(answer["data"][1]["index"], 1);
        assert_eq!(answer["data"][1]["object"], "embedding");
        let second: Vec<f32> = match format {
            "float" => serde_json::from_value(answer["data"][1]["embedding"].clone()).unwrap(),
            _ => {
                let text = answer["data"][1]["embedding"].as_str().unwrap();
                let bytes = base64::engine::general_purpose::STANDARD.decode(text).unwrap();
                bytes.chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
            }
        };
        assert_eq!(second, vec![-0.25; 384], "{format}");
        // The same task as any other: recorded, and sent as the model's own input.
        let (task, _, _) = it.queue.published.lock().unwrap()[0].clone();
        assert_eq!(task.input, json!({"texts": ["one", "two"]}));
        assert_eq!(
            it.store.get(&task.user_id, task.task_id).await.unwrap().unwrap().status,
            TaskStatus::Succeeded
        );
    }
}

#[tokio::test]
async fn past_the_wait_it_answers_504_naming_the_task_which_stays_queued() {
    let it = in_process();
    let began = Instant::now();
    let request = embeddings(json!({"model": "all-minilm-l6-v2", "input": "late"}), Some("wait=1"));
    let response = tower::ServiceExt::oneshot(inferpush_api::app(it.state.clone()), request).await.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.headers()["x-should-retry"], "false", "an SDK retry would make a second task");
    let waited = began.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    let bytes = http_body_util::BodyExt::collect(response.into_body()).await.unwrap().to_bytes();
    let error: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(error["error"]["type"], "timeout_error");
    assert_eq!(error["error"]["code"], "timeout");
    let task = it.queue.published.lock().unwrap()[0].0.clone();
    let task_id = task.task_id;
    assert_eq!(error["error"]["task_id"], task_id.to_string());
    assert!(error["error"]["status_url"].as_str().unwrap().ends_with(&task_id.to_string()));
    assert_eq!(it.store.get(&task.user_id, task_id).await.unwrap().unwrap().status, TaskStatus::Queued);
}

#[tokio::test]
async fn respond_async_answers_202_with_the_task_at_once() {
    let it = in_process();
    let request =
        embeddings(json!({"model": "all-minilm-l6-v2", "input": "later"}), Some("respond-async, wait=10"));
    let began = Instant::now();
    let (status, _, body, text) = super::send_to(it.state.clone(), request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert!(began.elapsed() < Duration::from_secs(1));
    assert_eq!(body["status"], "queued");
    assert_eq!(body["channel"], "private-inference.alice");
    assert_eq!(it.queue.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_requests_get_openais_error_shape_and_publish_nothing() {
    let it = in_process();
    let cases = [
        (
            json!({"model": "text-embedding-3-small", "input": "x"}),
            StatusCode::NOT_FOUND,
            Some("model_not_found"),
        ),
        (
            json!({"model": "all-minilm-l6-v2", "input": [[101, 102]]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("token_ids_not_supported"),
        ),
        (json!({"model": "all-minilm-l6-v2", "input": ""}), StatusCode::BAD_REQUEST, None),
        (json!({"input": "no model"}), StatusCode::BAD_REQUEST, None),
    ];
    for (body, want, code) in cases {
        let (status, _, answer, text) =
            super::send_to(it.state.clone(), embeddings(body.clone(), None)).await;
        assert_eq!(status, want, "{body}: {text}");
        assert_eq!(answer["error"]["type"], "invalid_request_error", "{text}");
        assert!(answer["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{text}");
        assert_eq!(answer["error"]["code"].as_str(), code, "{text}");
        assert!(answer["error"].as_object().unwrap().contains_key("param"), "{text}");
    }
    let unauthenticated = Request::post("/v1/embeddings")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({"model": "all-minilm-l6-v2", "input": "x"}).to_string()))
        .unwrap();
    let (status, _, answer, _) = super::send_to(it.state.clone(), unauthenticated).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["error"]["type"], "authentication_error");
    assert_eq!(answer["error"]["code"], "invalid_api_key");
    let broken = Request::post("/v1/embeddings")
        .header(header::AUTHORIZATION, "Bearer dev-alice")
        .body(Body::from("{not json"))
        .unwrap();
    let (status, _, answer, _) = super::send_to(it.state.clone(), broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["type"], "invalid_request_error");
    assert!(it.queue.published.lock().unwrap().is_empty(), "nothing was queued");
}
