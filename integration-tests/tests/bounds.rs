//! Resource bounds of the running api: what one client can hold must not hurt the others.

use std::time::{Duration, Instant};

use inferpush_integration_tests::process::{Service, bin_dir};
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW_CLIENTS: usize = 200;

/// A client that sends its request head one line at a time, never finishing it; returns
/// how long the server kept the connection open.
async fn slow_client(addr: String) -> Duration {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(&addr).await else {
        return Duration::ZERO;
    };
    if stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n").await.is_err() {
        return started.elapsed();
    }
    for n in 0.. {
        let line = format!("X-Slow-{n}: {}\r\n", "a".repeat(10));
        if stream.write_all(line.as_bytes()).await.is_err() {
            break;
        }
        // The server closes (or answers 408 and closes) once the head took too long.
        let mut buffer = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await {
            Ok(Ok(_)) | Ok(Err(_)) => break,
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    started.elapsed()
}

#[tokio::test]
async fn slow_header_clients_are_cut_off_and_the_api_keeps_serving_others() {
    let env = [
        ("INFERPUSH_DEV_MODE", "true".to_owned()),
        ("INFERPUSH_API_ADDR", "127.0.0.1:0".into()),
        ("INFERPUSH_HEADER_READ_TIMEOUT", "2s".into()),
    ];
    let mut api =
        Service::start("inferpush-api", "bounds-slow-clients", &bin_dir().join("inferpush-api"), &[], &env);
    let addr = api.wait_for_log_value("listening", "addr", Duration::from_secs(30)).await;

    let slow: Vec<_> = (0..SLOW_CLIENTS).map(|_| tokio::spawn(slow_client(addr.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Meanwhile another user is served as usual.
    let http = reqwest::Client::new();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let answer = http
            .post(format!("http://{addr}/pusher/auth"))
            .bearer_auth("dev-bob")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("socket_id=1234.5678&channel_name=private-inference.bob")
            .send()
            .await
            .expect("the api answers while slow clients hang on");
        assert_eq!(answer.status(), 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(slowest < Duration::from_millis(500), "a normal request took {slowest:?}");

    let mut held = Vec::new();
    for client in slow {
        held.push(client.await.unwrap());
    }
    let longest = held.iter().max().copied().unwrap_or_default();
    println!("slow clients: {SLOW_CLIENTS}, longest held {longest:?}, slowest normal request {slowest:?}");
    assert!(longest < Duration::from_secs(5), "a slow client kept its connection {longest:?}");
    assert!(api.is_running());
}

#[tokio::test]
async fn a_request_whose_body_never_finishes_is_answered_408_at_the_request_timeout() {
    let env = [
        ("INFERPUSH_DEV_MODE", "true".to_owned()),
        ("INFERPUSH_API_ADDR", "127.0.0.1:0".into()),
        ("INFERPUSH_REQUEST_TIMEOUT", "1s".into()),
    ];
    let mut api = Service::start(
        "inferpush-api",
        "bounds-request-timeout",
        &bin_dir().join("inferpush-api"),
        &[],
        &env,
    );
    let addr = api.wait_for_log_value("listening", "addr", Duration::from_secs(30)).await;
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let head = "POST /v1/inference HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer dev-alice\r\n\
                Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"";
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = vec![0u8; 64];
    let read =
        tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3), "answered after {:?}", started.elapsed());
}

const QUOTA: u64 = 16 * 1024 * 1024;

async fn redis_used_memory(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut connection).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
}

/// One user submits the largest echo tasks allowed as fast as the rate limit lets them:
/// Redis memory (the stack's own Redis) levels off at the result quota, and every refusal
/// names the quota.
#[tokio::test]
async fn redis_memory_levels_off_at_one_users_result_quota() {
    let stack = Stack::start_with(StackOptions {
        own_redis: true,
        api_env: vec![("INFERPUSH_RESULT_QUOTA_BYTES", QUOTA.to_string())],
        ..Default::default()
    })
    .await;
    let before = redis_used_memory(stack.redis_url()).await;
    // The largest echo input: 512 KiB of JSON.
    let input = json!({"text": "x".repeat(512 * 1024 - 20)});
    let per_task = serde_json::to_vec(&input).unwrap().len() as u64 + 512;
    let (mut accepted, mut quota_refusals, mut rate_refusals) = (Vec::new(), 0, 0);
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let (status, body) = stack.submit("dev-alice", "echo", input.clone()).await;
        match status {
            202 => accepted.push(body["task_id"].as_str().unwrap().to_owned()),
            429 if body["detail"].as_str().unwrap_or_default().contains("result storage quota") => {
                quota_refusals += 1
            }
            429 => {
                rate_refusals += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("{other}: {body}"),
        }
        if samples.len() < started.elapsed().as_millis() as usize / 500 {
            samples.push(redis_used_memory(stack.redis_url()).await.saturating_sub(before));
        }
    }
    let api = stack.api_client("dev-alice");
    inferpush_integration_tests::accounting::wait_final(&api, &accepted, Duration::from_secs(60)).await;
    let after = redis_used_memory(stack.redis_url()).await.saturating_sub(before);
    println!(
        "quota {QUOTA} B: accepted {} tasks of 512 KiB, {quota_refusals} refused for the quota, {rate_refusals} for the rate; \
         Redis grew {after} B ({:.2}× the quota); samples every 0.5 s: {samples:?}",
        accepted.len(),
        after as f64 / QUOTA as f64
    );
    assert!(quota_refusals > 0, "the quota was never reached");
    assert_eq!(accepted.len() as u64, QUOTA / per_task, "tasks up to the quota, not one more");
    // The stored results: the quota plus Redis' own overhead per key, never more.
    assert!(after < QUOTA * 3 / 2, "Redis grew {after} B for a {QUOTA} B quota");
    // Levelled off: once refusals began, no sample grew by more than a few tasks' worth.
    let peak_before_end = samples.iter().copied().max().unwrap_or(0);
    assert!(after <= peak_before_end + 2 * per_task, "still growing: {samples:?} then {after}");
}
