//! The api's routes through `app(state).oneshot(request)`, without a socket. In most
//! tests the real queue and store point at a closed port, so these cover every path that
//! must not publish; the accepted path runs on an in-memory store and queue
//! (`accepted.rs`).

#[path = "routes/accepted.rs"]
mod accepted;
#[path = "routes/delivery.rs"]
mod delivery;
#[path = "routes/embeddings.rs"]
mod embeddings;
#[path = "routes/waiting.rs"]
mod waiting;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use inferpush_api::auth::jwt::JwtVerifier;
use inferpush_api::auth::keys::ApiKeys;
use inferpush_api::delivery::DeliveryState;
use inferpush_api::dev::{DevMode, DevTokens, PusherPublic};
use inferpush_api::limits::{Limits, UserLimit, UserSlots};
use inferpush_api::queue::amqp::Broker;
use inferpush_api::{AppState, app};
use inferpush_protocol::{AppCredentials, SinkKind, SystemClock, Topology, WebhookTargets};
use inferpush_store::{MemoryEventLog, RedisTaskStore};
use serde_json::{Value, json};
use tower::ServiceExt;

fn state() -> AppState {
    // Port 1 on loopback: nothing listens, so any publish or store call fails fast with 503.
    let broker = Broker::new(
        "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        Topology::new("unit"),
        vec!["echo".into()],
        Duration::from_secs(5),
        Default::default(),
    );
    let clock = Arc::new(SystemClock);
    let store =
        RedisTaskStore::new("redis://127.0.0.1:1", "unit", Duration::from_secs(60), clock.clone()).unwrap();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let repository =
        inferpush_repository::Repository::load(&models, inferpush_repository::FileCheck::None).unwrap();
    AppState {
        catalogue: Arc::new(inferpush_protocol::catalogue::Catalogue::new(&repository)),
        prompts: Arc::new(inferpush_api::prompts::Prompts::default()),
        progress: Arc::new(store.progress()),
        serving: Arc::new(inferpush_api::serving::Serving::new(Arc::new(store.presence()))),
        queue: Arc::new(broker),
        store: Arc::new(store),
        clock,
        keys: Arc::new(ApiKeys::parse("", true).unwrap()),
        jwt: None,
        limits: Arc::new(Limits {
            submit: UserLimit::new("submit", 100, 100),
            auth: UserLimit::new("channel auth", 100, 100),
            list: UserLimit::new("task listing", 100, 100),
            waits: UserSlots::new(4),
        }),
        max_in_flight: 100,
        fair_share: 16,
        result_quota_bytes: 0,
        master_key: None,
        cors_origins: vec!["https://app.example".into()],
        pusher: Arc::new(AppCredentials::new("app-id", "app-key", "app-secret")),
        public_url: String::new(),
        publish_timeout: Duration::from_secs(5),
        max_body_bytes: 4096,
        dev: None,
        delivery: Arc::new(DeliveryState::new(
            vec![SinkKind::Pusher, SinkKind::Sse, SinkKind::Webhook],
            WebhookTargets::default(),
            "inferpush".into(),
            Arc::new(MemoryEventLog::default()),
            4,
        )),
        max_wait: Duration::from_secs(5),
        unsettled_grace: Duration::from_secs(60),
    }
}

/// [`state`] with development mode on, serving the repository's `web-demo/`.
fn dev_state() -> AppState {
    let web_demo_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web-demo");
    let pusher =
        PusherPublic { key: "app-key".into(), ws_host: "127.0.0.1".into(), ws_port: 6001, force_tls: false };
    let dev = DevMode { tokens: DevTokens::new(Duration::from_secs(60)), web_demo_dir, pusher };
    AppState { dev: Some(Arc::new(dev)), ..state() }
}

async fn send_to(state: AppState, request: Request<Body>) -> (StatusCode, Option<String>, Value, String) {
    let response = app(state).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, content_type, serde_json::from_slice(&bytes).unwrap_or(Value::Null), text)
}

async fn send(request: Request<Body>) -> (StatusCode, Option<String>, Value) {
    let (status, content_type, body, _) = send_to(state(), request).await;
    (status, content_type, body)
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
            submit(Some("dev-alice"), r#"{"model":"all-minilm-l6-v2","input":{"texts":[]}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            submit(Some("dev-alice"), r#"{"model":"all-minilm-l6-v2","input":{}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            submit(Some("dev-alice"), r#"{"model":"all-minilm-l6-v2","input":{"texts":[1]}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
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
    assert_eq!(body["models"][1]["name"], "all-minilm-l6-v2");
    assert!(body["models"][1]["input"].as_str().unwrap().contains("texts"));
    // OpenAI's list shape beside, for its SDKs' `models.list()`.
    assert_eq!(
        (body["object"].as_str(), body["data"][1]["id"].as_str()),
        (Some("list"), Some("all-minilm-l6-v2"))
    );
    assert_eq!(
        (body["data"][0]["object"].as_str(), body["data"][0]["owned_by"].as_str()),
        (Some("model"), Some("inferpush"))
    );
    let (status, content_type, _) = send(Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let preflight = |origin: &str| {
        Request::options("/v1/inference")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type")
            .body(Body::empty())
            .unwrap()
    };
    let allowed = app(state()).oneshot(preflight("https://app.example")).await.unwrap();
    assert_eq!(allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
    let refused = app(state()).oneshot(preflight("https://evil.example")).await.unwrap();
    assert!(!refused.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let any = AppState { cors_origins: vec!["*".into()], ..state() };
    let allowed = app(any).oneshot(preflight("https://evil.example")).await.unwrap();
    assert_eq!(allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

#[tokio::test]
async fn encrypted_channels_and_results_need_a_master_key() {
    let (status, _, body) =
        send(auth_form("dev-alice", "socket_id=1.2&channel_name=private-encrypted-inference.alice")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) =
        send(submit(Some("dev-alice"), r#"{"model":"echo","input":{},"encrypted":true}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever a client sends to the auth endpoint, the api never fails (5xx) and signs
        /// only the caller's own channel.
        #[test]
        fn auth_endpoint_signs_only_own_channels_whatever_the_body(
            socket in "[0-9.:a-z]{0,12}",
            channel in prop_oneof![
                "[ -~]{0,60}",
                "private-inference\\.[ -~]{0,20}",
                Just("private-inference.alice".to_owned()),
            ],
            json in any::<bool>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (status, body) = runtime.block_on(async {
                let (content_type, payload) = if json {
                    ("application/json", serde_json::json!({"socket_id": socket, "channel_name": channel}).to_string())
                } else {
                    ("application/x-www-form-urlencoded",
                     serde_urlencoded::to_string([("socket_id", &socket), ("channel_name", &channel)]).unwrap())
                };
                let request = Request::post("/pusher/auth")
                    .header(header::AUTHORIZATION, "Bearer dev-alice")
                    .header(header::CONTENT_TYPE, content_type)
                    .body(Body::from(payload))
                    .unwrap();
                let (status, _, body) = send(request).await;
                (status, body)
            });
            prop_assert!(!status.is_server_error(), "{status}: {body}");
            if status == StatusCode::OK {
                prop_assert!(channel == "private-inference.alice" || channel == "presence-inference.alice", "{channel}");
            } else {
                prop_assert!(body["detail"].is_string(), "{body}");
            }
        }

        /// Arbitrary bytes as a submit body never reach the broker and never crash the api.
        #[test]
        fn submit_rejects_arbitrary_bodies_cleanly(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let status = runtime.block_on(async {
                let request = Request::post("/v1/inference")
                    .header(header::AUTHORIZATION, "Bearer dev-alice")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body))
                    .unwrap();
                send(request).await.0
            });
            // 503 would mean it got as far as the (absent) broker: only a valid task may.
            prop_assert!(matches!(status.as_u16(), 400 | 413 | 415 | 422 | 503), "{status}");
        }

        /// Well-formed JSON of any shape, with any `Idempotency-Key`, is answered with a
        /// clear client error or gets as far as the (absent) store: never a 5xx of its own.
        #[test]
        fn submit_answers_any_json_and_any_idempotency_key_cleanly(
            model in prop_oneof![Just("echo".to_owned()), Just("all-minilm-l6-v2".to_owned()), "[ -~]{0,20}"],
            input in json_value(),
            encrypted in any::<bool>(),
            key in proptest::option::of(prop_oneof!["[ -~]{0,300}", "[\\x00-\\x7f]{0,10}"]),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (status, body) = runtime.block_on(async {
                let mut request = Request::post("/v1/inference")
                    .header(header::AUTHORIZATION, "Bearer dev-alice")
                    .header(header::CONTENT_TYPE, "application/json");
                if let Some(key) = key.as_deref().and_then(|k| axum::http::HeaderValue::from_str(k).ok()) {
                    request = request.header("idempotency-key", key);
                }
                let body = serde_json::json!({"model": model, "input": input, "encrypted": encrypted});
                let (status, _, body) = send(request.body(Body::from(body.to_string())).unwrap()).await;
                (status, body)
            });
            prop_assert!(matches!(status.as_u16(), 400 | 413 | 422 | 503), "{status}: {body}");
            prop_assert!(body["detail"].is_string(), "{body}");
        }

        /// Any `since` and `limit` is a clear 422 or reaches the (absent) store.
        #[test]
        fn listing_answers_any_query_cleanly(since in "[ -~]{0,40}", limit in "[ -~]{0,8}") {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let status = runtime.block_on(async {
                let query = serde_urlencoded::to_string([("since", &since), ("limit", &limit)]).unwrap();
                let request = Request::get(format!("/v1/inference?{query}"))
                    .header(header::AUTHORIZATION, "Bearer dev-alice")
                    .body(Body::empty())
                    .unwrap();
                send(request).await.0
            });
            prop_assert!(matches!(status.as_u16(), 400 | 422 | 503), "{status}");
        }
    }

    /// JSON values of any shape, a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "[ -~]{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}

fn token_request(body: &str) -> Request<Body> {
    Request::post("/dev/token")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn dev_mode_signs_visitors_in_with_tokens_that_open_only_their_own_channel() {
    let dev = dev_state();
    let (status, _, issued, _) = send_to(dev.clone(), token_request("{}")).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    let user = issued["user_id"].as_str().unwrap().to_owned();
    assert!(user.starts_with("demo-"), "{user}");
    assert_eq!(issued["channel"], format!("private-inference.{user}"));
    assert_eq!(issued["expires_in"], 60);
    assert_eq!(issued["pusher"]["key"], "app-key");
    let token = issued["token"].as_str().unwrap();

    let own = format!("socket_id=1234.5678&channel_name=private-inference.{user}");
    let (status, _, _, _) = send_to(dev.clone(), auth_form(token, &own)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _, _) =
        send_to(dev.clone(), auth_form(token, "socket_id=1234.5678&channel_name=private-inference.alice"))
            .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A chosen user (the page keeps its user across reloads); nonsense is refused.
    let (_, _, again, _) = send_to(dev.clone(), token_request(&format!(r#"{{"user_id": "{user}"}}"#))).await;
    assert_eq!(again["user_id"], user.as_str());
    let (status, _, body, _) = send_to(dev.clone(), token_request(r#"{"user_id": "a b"}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _, _, _) = send_to(dev.clone(), token_request(r#"{"user": "x"}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Without development mode the same token means nothing and the endpoint is gone.
    let (status, _, _, _) = send_to(state(), auth_form(token, &own)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, content_type, _, _) = send_to(state(), token_request("{}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
}

#[tokio::test]
async fn dev_mode_never_mints_a_token_for_a_real_user() {
    use sha2::Digest;
    let carol_key = hex::encode(sha2::Sha256::digest(b"carols-real-key"));
    let keys = ApiKeys::parse(&format!("carol:{carol_key}"), true).unwrap();
    let jwt =
        JwtVerifier::from_config(Some("issuer-secret-issuer-secret"), None, Some("idp"), Some("inferpush"))
            .unwrap()
            .unwrap();
    let dev = AppState { keys: Arc::new(keys), ..dev_state() };
    let (status, _, body, _) = send_to(dev.clone(), token_request(r#"{"user_id": "carol"}"#)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a user with a configured key: {body}");
    let (status, _, _, _) = send_to(dev.clone(), token_request(r#"{"user_id": "alice"}"#)).await;
    assert_eq!(status, StatusCode::OK, "the development users stay available");

    // With a JWT issuer, whose users could have any name, only demo users get tokens…
    let with_issuer = AppState { jwt: Some(Arc::new(jwt)), ..dev };
    let (status, _, body, _) = send_to(with_issuer.clone(), token_request(r#"{"user_id": "dave"}"#)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, _, _) = send_to(with_issuer.clone(), token_request(r#"{"user_id": "demo-1234"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    // …and the issuer's own tokens for demo users are refused, so the two never meet.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"sub": "demo-1234", "iss": "idp", "aud": "inferpush", "exp": now + 60});
    let key = jsonwebtoken::EncodingKey::from_secret(b"issuer-secret-issuer-secret");
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let (status, _, body, _) =
        send_to(with_issuer, submit(Some(&token), r#"{"model":"echo","input":{}}"#)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("reserved for demo tokens"), "{body}");
}

#[tokio::test]
async fn listing_is_rate_limited_per_user_like_submits() {
    let limits = Limits {
        submit: UserLimit::new("submit", 100, 100),
        auth: UserLimit::new("channel auth", 100, 100),
        list: UserLimit::new("task listing", 1, 2),
        waits: UserSlots::new(4),
    };
    // An in-memory store answers at once, so the bucket cannot refill between calls.
    let store = Arc::new(inferpush_store::MemoryTaskStore::new());
    let state = AppState { limits: Arc::new(limits), store, ..state() };
    let list = |key: &str| {
        Request::get("/v1/inference?since=0")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..2 {
        let (status, _, _, _) = send_to(state.clone(), list("dev-alice")).await;
        assert_eq!(status, StatusCode::OK, "within the burst");
    }
    let response = app(state.clone()).oneshot(list("dev-alice")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let (status, _, _, _) = send_to(state, list("dev-bob")).await;
    assert_eq!(status, StatusCode::OK, "another user is not limited");
}

#[tokio::test]
async fn an_api_key_that_looks_like_a_jwt_still_authenticates() {
    use sha2::Digest;
    let dotted = "live.key.with-two-dots";
    let keys = ApiKeys::parse(&format!("erin:{}", hex::encode(sha2::Sha256::digest(dotted))), false).unwrap();
    let state = AppState { keys: Arc::new(keys), ..state() };
    let form = "socket_id=1234.5678&channel_name=private-inference.erin";
    let (status, _, body, _) = send_to(state.clone(), auth_form(dotted, form)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _, _) = send_to(state, auth_form("not.a.key", form)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn dev_mode_serves_the_demo_page() {
    let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
    let (status, content_type, _, page) = send_to(dev_state(), get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.unwrap().starts_with("text/html"));
    assert!(page.contains("/vendor/pusher.min.js") && page.contains("/demo/app.js"), "{page}");
    let (status, content_type, _, _) = send_to(dev_state(), get("/demo/app.js")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.unwrap().contains("javascript"));
    let (status, _, _, _) = send_to(dev_state(), get("/demo/../Cargo.toml")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _, _) = send_to(state(), get("/")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cors_lets_laravel_echo_send_its_csrf_and_socket_headers() {
    let preflight = Request::options("/broadcasting/auth")
        .header(header::ORIGIN, "https://app.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type,x-csrf-token,x-socket-id")
        .body(Body::empty())
        .unwrap();
    let response = app(state()).oneshot(preflight).await.unwrap();
    let allowed = response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().to_owned();
    assert!(allowed.contains("x-csrf-token") && allowed.contains("x-socket-id"), "{allowed}");
}
