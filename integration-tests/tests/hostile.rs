//! A table of bad and hostile requests against the running api: each gets its expected
//! status and a problem+json `detail`, nothing is published, and the api stays healthy.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use inferpush_integration_tests::stack::{JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET};
use inferpush_integration_tests::{Stack, StackOptions};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 300, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE})
}

fn jwt(claims: Value, secret: &str, algorithm: Algorithm) -> String {
    encode(&Header::new(algorithm), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{}.", URL_SAFE_NO_PAD.encode(claims.to_string()))
}

/// One row: what it is, the request, the status it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    auth: Option<String>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    extra_header: Option<(&'static str, String)>,
    expected: u16,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &str,
    auth: Option<&str>,
    body: Value,
    expected: u16,
) -> Case {
    Case {
        name,
        method,
        path: path.to_owned(),
        auth: auth.map(str::to_owned),
        content_type: Some("application/json"),
        body: body.to_string().into_bytes(),
        extra_header: None,
        expected,
    }
}

fn raw(
    name: &'static str,
    path: &str,
    auth: &str,
    content_type: &'static str,
    body: &[u8],
    expected: u16,
) -> Case {
    Case {
        name,
        method: "POST",
        path: path.to_owned(),
        auth: Some(auth.to_owned()),
        content_type: Some(content_type),
        body: body.to_vec(),
        extra_header: None,
        expected,
    }
}

fn submit(name: &'static str, auth: &str, body: Value, expected: u16) -> Case {
    case(name, "POST", "/v1/inference", Some(auth), body, expected)
}

fn channel(name: &'static str, auth: &str, socket: &str, channel: &str, expected: u16) -> Case {
    let body = serde_urlencoded::to_string([("socket_id", socket), ("channel_name", channel)]).unwrap();
    raw(name, "/pusher/auth", auth, "application/x-www-form-urlencoded", body.as_bytes(), expected)
}

#[tokio::test]
async fn thirty_odd_hostile_requests_get_clear_errors_and_change_nothing() {
    let stack = Stack::start_with(StackOptions { worker: false, ..Default::default() }).await;
    let alice = format!("Bearer {}", jwt(claims("alice"), JWT_SECRET, Algorithm::HS256));
    let echo = json!({"model": "echo", "input": {}});
    let bearer = |token: String| format!("Bearer {token}");
    let (_, bobs) = stack.submit("dev-bob", "echo", json!({"mine": true})).await;
    let bobs_task = format!("/v1/inference/{}", bobs["task_id"].as_str().unwrap());
    let pusher_only = json!({"model": "echo", "input": {}, "sinks": ["pusher"]});
    let (status, alices) = stack.submit_body("dev-alice", pusher_only).await;
    assert_eq!(status, 202, "{alices}");
    let alices_events = format!("/v1/inference/{}/events", alices["task_id"].as_str().unwrap());
    let depth_before = stack.queued("echo").await;

    // Past serde_json's recursion limit inside an otherwise valid submit.
    let nested = format!(r#"{{"model":"echo","input":{{"a":{}"#, "[".repeat(5000));
    let cases = vec![
        // Credentials.
        case("no credentials", "POST", "/v1/inference", None, echo.clone(), 401),
        submit("empty bearer", "Bearer ", echo.clone(), 401),
        submit("basic scheme", "Basic ZGV2LWFsaWNlOg==", echo.clone(), 401),
        submit("unknown API key", "Bearer sk-not-a-key", echo.clone(), 401),
        submit(
            "expired JWT",
            &bearer(jwt(with(claims("alice"), "exp", json!(now() - 600)), JWT_SECRET, Algorithm::HS256)),
            echo.clone(),
            401,
        ),
        submit(
            "not-yet-valid JWT",
            &bearer(jwt(with(claims("alice"), "nbf", json!(now() + 600)), JWT_SECRET, Algorithm::HS256)),
            echo.clone(),
            401,
        ),
        submit(
            "JWT signed with another secret",
            &bearer(jwt(claims("alice"), "guessed", Algorithm::HS256)),
            echo.clone(),
            401,
        ),
        submit("JWT with alg none", &bearer(unsigned(&claims("alice"))), echo.clone(), 401),
        submit(
            "JWT with another algorithm",
            &bearer(jwt(claims("alice"), JWT_SECRET, Algorithm::HS512)),
            echo.clone(),
            401,
        ),
        submit(
            "JWT from another issuer",
            &bearer(jwt(with(claims("alice"), "iss", json!("evil")), JWT_SECRET, Algorithm::HS256)),
            echo.clone(),
            401,
        ),
        submit(
            "JWT for another audience",
            &bearer(jwt(with(claims("alice"), "aud", json!("other")), JWT_SECRET, Algorithm::HS256)),
            echo.clone(),
            401,
        ),
        submit(
            "JWT naming a crafted user",
            &bearer(jwt(claims("alice,bob"), JWT_SECRET, Algorithm::HS256)),
            echo.clone(),
            401,
        ),
        submit("garbage in JWT shape", "Bearer a.b.c", echo.clone(), 401),
        // Channels.
        channel("another user's channel", "Bearer dev-alice", "1.2", "private-inference.bob", 403),
        channel("another user's presence channel, by JWT", &alice, "1.2", "presence-inference.bob", 403),
        channel(
            "a channel naming two users",
            "Bearer dev-alice",
            "1.2",
            "private-inference.alice,private-inference.bob",
            403,
        ),
        channel("a NUL in the channel", "Bearer dev-alice", "1.2", "private-inference.alice\0", 403),
        channel(
            "a 300-character channel",
            "Bearer dev-alice",
            "1.2",
            &format!("private-inference.{}", "a".repeat(280)),
            403,
        ),
        channel("a public channel", "Bearer dev-alice", "1.2", "inference.alice", 403),
        channel("malformed socket_id", "Bearer dev-alice", "abc", "private-inference.alice", 400),
        channel(
            "socket_id smuggling a channel",
            "Bearer dev-alice",
            "1.2:private-inference.bob",
            "private-inference.alice",
            400,
        ),
        raw("auth as text/plain", "/pusher/auth", "Bearer dev-alice", "text/plain", b"socket_id=1.2", 415),
        raw(
            "auth with invalid JSON",
            "/broadcasting/auth",
            "Bearer dev-alice",
            "application/json",
            b"{",
            400,
        ),
        // Submits.
        raw("invalid JSON", "/v1/inference", "Bearer dev-alice", "application/json", b"{\"model\":", 400),
        raw(
            "deeply nested JSON",
            "/v1/inference",
            "Bearer dev-alice",
            "application/json",
            nested.as_bytes(),
            400,
        ),
        raw(
            "submit as form data",
            "/v1/inference",
            "Bearer dev-alice",
            "application/x-www-form-urlencoded",
            b"model=echo",
            415,
        ),
        raw(
            "a 2 MB body",
            "/v1/inference",
            "Bearer dev-alice",
            "application/json",
            &vec![b' '; 2 * 1024 * 1024],
            413,
        ),
        submit("unknown model", "Bearer dev-alice", json!({"model": "gpt-9", "input": {}}), 422),
        submit(
            "no texts",
            "Bearer dev-alice",
            json!({"model": "all-minilm-l6-v2", "input": {"texts": []}}),
            422,
        ),
        submit(
            "257 texts",
            "Bearer dev-alice",
            json!({"model": "all-minilm-l6-v2", "input": {"texts": vec!["x"; 257]}}),
            422,
        ),
        submit(
            "a 10001-character text",
            "Bearer dev-alice",
            json!({"model": "all-minilm-l6-v2", "input": {"texts": ["x".repeat(10_001)]}}),
            422,
        ),
        submit(
            "a non-string text",
            "Bearer dev-alice",
            json!({"model": "all-minilm-l6-v2", "input": {"texts": [{"$gt": ""}]}}),
            422,
        ),
        submit(
            "a huge number",
            "Bearer dev-alice",
            json!({"model": "echo", "input": {"delay_ms": 1e308}}),
            422,
        ),
        submit(
            "a negative number",
            "Bearer dev-alice",
            json!({"model": "echo", "input": {"delay_ms": i64::MIN}}),
            422,
        ),
        submit("input not an object", "Bearer dev-alice", json!({"model": "echo", "input": "rm -rf /"}), 422),
        submit(
            "an unknown field",
            "Bearer dev-alice",
            json!({"model": "echo", "input": {}, "user_id": "bob"}),
            422,
        ),
        // Reading.
        case("another user's task", "GET", &bobs_task, Some("Bearer dev-alice"), Value::Null, 404),
        case(
            "cancelling another user's task",
            "DELETE",
            &bobs_task,
            Some("Bearer dev-alice"),
            Value::Null,
            404,
        ),
        case(
            "a task id that is not one",
            "GET",
            "/v1/inference/..%2F..%2Fetc%2Fpasswd",
            Some("Bearer dev-alice"),
            Value::Null,
            404,
        ),
        case("a huge page", "GET", "/v1/inference?limit=100000", Some("Bearer dev-alice"), Value::Null, 422),
        Case {
            extra_header: Some(("idempotency-key", "k".repeat(300))),
            ..submit("an oversized Idempotency-Key", "Bearer dev-alice", echo.clone(), 400)
        },
        // Safe to expose, round two.
        Case {
            extra_header: Some(("last-event-id", "18446744073709551615-18446744073709551615".into())),
            ..case(
                "Redis's largest stream id as Last-Event-ID",
                "GET",
                "/v1/events",
                Some("Bearer dev-alice"),
                Value::Null,
                400,
            )
        },
        Case {
            extra_header: Some(("last-event-id", "99999999999999-0".into())),
            ..case(
                "a Last-Event-ID from the future",
                "GET",
                "/v1/events",
                Some("Bearer dev-alice"),
                Value::Null,
                400,
            )
        },
        case(
            "the events of a task that leaves out sse",
            "GET",
            &alices_events,
            Some("Bearer dev-alice"),
            Value::Null,
            409,
        ),
        submit(
            "an encrypted task to a plaintext sink",
            "Bearer dev-alice",
            json!({"model": "echo", "input": {}, "encrypted": true, "sinks": ["pusher", "sse"]}),
            422,
        ),
        submit(
            "an encrypted task with a webhook",
            "Bearer dev-alice",
            json!({"model": "echo", "input": {}, "encrypted": true, "webhook": "https://hooks.example.com/x"}),
            422,
        ),
    ];
    assert!(cases.len() >= 30);

    // No connection reuse: the api may close a connection after refusing a body unread.
    let http = &reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    for case in &cases {
        let url = format!("{}{}", stack.api_url, case.path);
        let mut request = match case.method {
            "GET" => http.get(&url),
            "DELETE" => http.delete(&url),
            _ => http.post(&url).body(case.body.clone()),
        };
        if let Some(auth) = &case.auth {
            request = request.header("authorization", auth);
        }
        if let (Some(content_type), "POST") = (case.content_type, case.method) {
            request = request.header("content-type", content_type);
        }
        if let Some((name, value)) = &case.extra_header {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let status = response.status().as_u16();
        let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, case.expected, "{}: {body}", case.name);
        assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{}", case.name);
        assert!(
            !body["detail"].as_str().unwrap_or_default().is_empty(),
            "{}: no detail in {body}",
            case.name
        );
    }

    // Nothing was published, and the api is fine.
    assert_eq!(stack.queued("echo").await, depth_before);
    assert_eq!(stack.queued("all-minilm-l6-v2").await, 0);
    assert_eq!(http.get(format!("{}/readyz", stack.api_url)).send().await.unwrap().status(), 200);
    // And a valid JWT still works, for its own user only.
    let accepted = http
        .post(format!("{}/v1/inference", stack.api_url))
        .header("authorization", &alice)
        .json(&echo)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    assert_eq!(accepted["channel"], "private-inference.alice");
    println!("{} hostile requests refused, nothing published", cases.len());
}

#[tokio::test]
async fn a_user_over_the_rate_limit_gets_429_with_retry_after() {
    let stack = Stack::start_with(StackOptions { worker: false, ..Default::default() }).await;
    let mut limited = None;
    for _ in 0..80 {
        let body =
            serde_urlencoded::to_string([("socket_id", "1.2"), ("channel_name", "private-inference.alice")])
                .unwrap();
        let response = stack
            .http()
            .post(format!("{}/pusher/auth", stack.api_url))
            .bearer_auth("dev-alice")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the auth burst (50) was never limited");
    assert!(response.headers().contains_key("retry-after"));
    // Bob is not affected by Alice's bucket.
    assert_eq!(stack.channel_auth("dev-bob", "1.2", "private-inference.bob").await.0, 200);
}

/// A request without valid credentials is refused before its body is read, on every route
/// that takes one: a large `Content-Length`, no body sent, and the 401 comes at once.
#[tokio::test]
async fn requests_without_credentials_are_refused_before_their_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start_with(StackOptions { worker: false, ..Default::default() }).await;
    let addr = stack.api_url.trim_start_matches("http://").to_owned();
    for path in ["/v1/inference", "/v1/embeddings", "/pusher/auth", "/broadcasting/auth"] {
        for auth in ["", "Authorization: Bearer sk-not-a-key\r\n"] {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: api\r\n{auth}Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            let started = std::time::Instant::now();
            let mut answer = vec![0u8; 64];
            let read = tokio::time::timeout(std::time::Duration::from_secs(2), stream.read(&mut answer))
                .await
                .unwrap_or_else(|_| panic!("{path} ({auth:?}) waited for the body"))
                .unwrap();
            let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
            assert!(answer.starts_with("HTTP/1.1 401"), "{path} ({auth:?}): {answer}");
            assert!(
                started.elapsed() < std::time::Duration::from_millis(500),
                "{path}: {:?}",
                started.elapsed()
            );
        }
    }
}
