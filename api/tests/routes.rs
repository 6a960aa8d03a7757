//! The api's routes through `app(state).oneshot(request)`, without a socket. The broker
//! points at a closed port, so these cover every path that must not publish.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use inferpush_api::broker::Broker;
use inferpush_api::keys::ApiKeys;
use inferpush_api::{AppState, app};
use inferpush_protocol::{AppCredentials, Topology};
use inferpush_store::TaskStore;
use serde_json::{Value, json};
use tower::ServiceExt;

fn state() -> AppState {
    // Port 1 on loopback: nothing listens, so any publish or store call fails fast with 503.
    let broker =
        Broker::new("amqp://guest:guest@127.0.0.1:1/%2f".into(), Topology::new("unit"), vec!["echo".into()]);
    let store = TaskStore::new("redis://127.0.0.1:1", "unit", Duration::from_secs(60)).unwrap();
    AppState {
        broker: Arc::new(broker),
        store,
        keys: Arc::new(ApiKeys::parse("", true).unwrap()),
        pusher: Arc::new(AppCredentials::new("app-id", "app-key", "app-secret")),
        public_url: String::new(),
        max_body_bytes: 4096,
    }
}

async fn send(request: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let response = app(state()).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn auth_form(key: &str, body: &str) -> Request<Body> {
    Request::post("/pusher/auth")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

fn submit(key: Option<&str>, body: &str) -> Request<Body> {
    let mut builder = Request::post("/v1/inference").header(header::CONTENT_TYPE, "application/json");
    if let Some(key) = key {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {key}"));
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn own_private_channel_is_signed_like_pusher_does() {
    let (status, _, body) =
        send(auth_form("dev-alice", "socket_id=123.456&channel_name=private-inference.alice")).await;
    assert_eq!(status, StatusCode::OK);
    let expected = AppCredentials::new("app-id", "app-key", "app-secret")
        .authorize_private("123.456", "private-inference.alice")
        .unwrap();
    assert_eq!(body, json!({"auth": expected}));
}

#[tokio::test]
async fn broadcasting_path_accepts_json_bodies() {
    let request = Request::post("/broadcasting/auth")
        .header(header::AUTHORIZATION, "Bearer dev-bob")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"socket_id":"1.2","channel_name":"private-inference.bob"}"#))
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["auth"].as_str().unwrap().starts_with("app-key:"));
}

#[tokio::test]
async fn presence_channel_gets_signed_channel_data_for_the_caller() {
    let (status, _, body) =
        send(auth_form("dev-alice", "socket_id=1.2&channel_name=presence-inference.alice")).await;
    assert_eq!(status, StatusCode::OK);
    let data = body["channel_data"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<Value>(data).unwrap()["user_id"], "alice");
    let expected = AppCredentials::new("app-id", "app-key", "app-secret")
        .authorize_presence("1.2", "presence-inference.alice", data)
        .unwrap();
    assert_eq!(body["auth"], expected);
}

#[tokio::test]
async fn other_users_and_other_channels_are_forbidden() {
    for channel in
        ["private-inference.bob", "presence-inference.bob", "private-foo", "private-inference.alice%2Cbob"]
    {
        let (status, content_type, body) =
            send(auth_form("dev-alice", &format!("socket_id=1.2&channel_name={channel}"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{channel}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert!(
            body["detail"].as_str().unwrap().contains("private-inference")
                || body["detail"].as_str().unwrap().contains("another user"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn malformed_auth_requests_are_refused() {
    let cases = [
        (
            auth_form("dev-alice", "socket_id=abc&channel_name=private-inference.alice"),
            StatusCode::BAD_REQUEST,
        ),
        (auth_form("dev-alice", "channel_name=private-inference.alice"), StatusCode::BAD_REQUEST),
        (auth_form("wrong", "socket_id=1.2&channel_name=private-inference.alice"), StatusCode::UNAUTHORIZED),
        (
            Request::post("/pusher/auth")
                .header(header::AUTHORIZATION, "Bearer dev-alice")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("socket_id=1.2"))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (request, expected) in cases {
        let (status, content_type, body) = send(request).await;
        assert_eq!(status, expected, "{body}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    }
}

#[tokio::test]
async fn submit_validates_before_touching_the_broker() {
    let cases = [
        (submit(None, r#"{"model":"echo","input":{}}"#), StatusCode::UNAUTHORIZED),
        (submit(Some("dev-alice"), "{"), StatusCode::BAD_REQUEST),
        (submit(Some("dev-alice"), r#"{"model":"nope","input":{}}"#), StatusCode::UNPROCESSABLE_ENTITY),
        (submit(Some("dev-alice"), r#"{"model":"echo","input":[]}"#), StatusCode::UNPROCESSABLE_ENTITY),
        (
            submit(Some("dev-alice"), r#"{"model":"echo","input":{},"extra":1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            submit(
                Some("dev-alice"),
                &format!(r#"{{"model":"echo","input":{{"t":"{}"}}}}"#, "x".repeat(5000)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (request, expected) in cases {
        let (status, content_type, body) = send(request).await;
        assert_eq!(status, expected, "{body}");
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert_eq!(body["status"], expected.as_u16());
    }
}

#[tokio::test]
async fn broker_outage_is_a_503_with_retry_after() {
    let response =
        app(state()).oneshot(submit(Some("dev-alice"), r#"{"model":"echo","input":{}}"#)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let ready = app(state()).oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health = app(state()).oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn models_are_listed_and_unknown_paths_are_problem_json_404s() {
    let (status, _, body) = send(Request::get("/v1/models").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["models"][0]["name"], "echo");
    let (status, content_type, _) = send(Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
}
