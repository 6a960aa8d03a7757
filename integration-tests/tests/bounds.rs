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
    // Until the quota has refused a few (on a busy machine a 512 KiB submit may take 200 ms:
    // a fixed few seconds did not always reach it), within 30 s.
    while started.elapsed() < Duration::from_secs(30) && quota_refusals < 3 {
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
    // Levelled off: with every accepted task final, more submits are refused for the quota
    // and store nothing. (Sampled while submitting, memory still grows after the last
    // refusal: tasks accepted just before it store their results when they finish.)
    let mut refused_later = 0;
    while refused_later < 5 {
        let (status, body) = stack.submit("dev-alice", "echo", input.clone()).await;
        match status {
            429 if body["detail"].as_str().unwrap_or_default().contains("result storage quota") => {
                refused_later += 1
            }
            429 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("past the quota, with every task final: {other}: {body}"),
        }
    }
    // A refused submit's publishing intent (the whole task, noted before the store is asked)
    // is removed just after the refusal: give the last one a moment.
    let settled = Instant::now();
    let mut later = redis_used_memory(stack.redis_url()).await.saturating_sub(before);
    while later > after + per_task && settled.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        later = redis_used_memory(stack.redis_url()).await.saturating_sub(before);
    }
    println!("after 5 more submits, each refused for the quota: Redis grew {later} B");
    assert!(later <= after + per_task, "still growing: {samples:?}, {after} B, then {later} B");
}

/// The HTTP/2 client preface and an empty SETTINGS frame: what an HTTP/2 client sends
/// before its first request.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Opens a connection that sends `opening` (maybe nothing) and then stays quiet; resolves
/// to how long the api kept it open.
async fn quiet_connection(addr: String, opening: &'static [u8]) -> Duration {
    let started = Instant::now();
    let Ok(mut stream) = TcpStream::connect(&addr).await else { return Duration::ZERO };
    if stream.write_all(opening).await.is_err() {
        return started.elapsed();
    }
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer)).await {
            // The server's own SETTINGS (HTTP/2) come first: keep waiting for the close.
            Ok(Ok(n)) if n > 0 => {}
            _ => return started.elapsed(),
        }
    }
}

/// Connections that never bring a request (silent, HTTP/2 preface only, HTTP/2 gone quiet
/// after its settings), more of them than the api holds at once: each is closed within the
/// header timeout of its accept (and a second to say goodbye), a keep-alive connection
/// within the header and idle timeouts of its last request, and meanwhile another client's requests, each on a new connection, keep
/// answering within 500 ms (at the limit, the idlest connection makes room).
#[tokio::test]
async fn connections_that_never_send_a_request_never_lock_out_others() {
    let env = [
        ("INFERPUSH_DEV_MODE", "true".to_owned()),
        ("INFERPUSH_API_ADDR", "127.0.0.1:0".into()),
        ("INFERPUSH_API_METRICS_ADDR", "127.0.0.1:0".into()),
        ("INFERPUSH_MAX_CONNECTIONS", "64".into()),
        ("INFERPUSH_HEADER_READ_TIMEOUT", "2s".into()),
        ("INFERPUSH_IDLE_TIMEOUT", "3s".into()),
    ];
    let mut api = Service::start(
        "inferpush-api",
        "bounds-idle-connections",
        &bin_dir().join("inferpush-api"),
        &[],
        &env,
    );
    let addr = api.wait_for_log_value("listening", "addr", Duration::from_secs(30)).await;

    let mut quiet = Vec::new();
    for (kind, opening) in
        [("silent", &b""[..]), ("preface only", &HTTP2_PREFACE[..24]), ("HTTP/2 quiet", HTTP2_PREFACE)]
    {
        for _ in 0..27 {
            quiet.push((kind, tokio::spawn(quiet_connection(addr.clone(), opening))));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Meanwhile another client is served at once, each request on a new connection.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(4);
    let mut requests = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_secs(5), http.get(format!("http://{addr}/healthz")).send())
                .await
                .expect("the api answers while quiet connections fill its slots")
                .unwrap();
        assert_eq!(answer.status(), 200);
        slowest = slowest.max(started.elapsed());
        requests += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut longest = Vec::new();
    for (kind, connection) in quiet {
        let held = connection.await.unwrap();
        assert!(held < Duration::from_secs(4), "a {kind} connection was held {held:?}");
        longest.push((held, kind));
    }
    // Without that pressure, a keep-alive connection that made one request, then went quiet,
    // is closed by the timeouts alone.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 512];
    let n = kept.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    let kept_since = Instant::now();
    // The rest of the answer, if any, then the close.
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(30), kept.read(&mut answer)).await {
        if n == 0 {
            break;
        }
    }
    let kept = kept_since.elapsed();
    let (held, kind) = longest.iter().max().copied().unwrap();
    println!(
        "81 quiet connections against 64 slots: longest held {held:?} ({kind}); keep-alive closed after {kept:?}; \
         {requests} requests meanwhile, slowest {slowest:?}"
    );
    assert!(slowest < Duration::from_millis(500), "a normal request took {slowest:?}");
    // HTTP/1 times the next request head from the end of the last request: the header
    // timeout (2 s) comes before the idle timeout (3 s).
    assert!(kept >= Duration::from_millis(1500) && kept < Duration::from_secs(4), "keep-alive held {kept:?}");
    assert!(api.is_running());
}

/// One user's requests waiting for their results are bounded per replica: past the bound a
/// `Prefer: wait` submit gets its 202 at once (the wait not applied) and `/v1/embeddings` a
/// 429 before any task is made; another user's waits are unaffected.
#[tokio::test]
async fn one_users_waits_are_bounded_and_past_the_bound_the_answer_comes_at_once() {
    let stack = Stack::start_with(StackOptions {
        worker: false,
        api_env: vec![("INFERPUSH_MAX_WAITS_PER_USER", "4".into()), ("INFERPUSH_MAX_WAIT", "3s".into())],
        ..Default::default()
    })
    .await;
    let wait = |key: &'static str| {
        let (http, url) = (stack.http().clone(), format!("{}/v1/inference", stack.api_url));
        async move {
            let started = Instant::now();
            let answer = http
                .post(url)
                .bearer_auth(key)
                .header("prefer", "wait=3")
                .json(&json!({"model": "echo", "input": {"text": "never run"}}))
                .send()
                .await
                .unwrap();
            let applied = answer.headers().get("preference-applied").map(|v| v.to_str().unwrap().to_owned());
            (answer.status().as_u16(), applied, started.elapsed())
        }
    };
    let alice: Vec<_> = (0..10).map(|_| tokio::spawn(wait("dev-alice"))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bob = tokio::spawn(wait("dev-bob"));
    let embeddings = stack
        .http()
        .post(format!("{}/v1/embeddings", stack.api_url))
        .bearer_auth("dev-alice")
        .json(&json!({"model": "all-minilm-l6-v2", "input": "a sentence"}))
        .send()
        .await
        .unwrap();
    let embeddings_status = embeddings.status().as_u16();
    let embeddings_body: serde_json::Value = embeddings.json().await.unwrap();

    let (mut held, mut at_once) = (0, 0);
    for answer in alice {
        let (status, applied, took) = answer.await.unwrap();
        assert_eq!(status, 202);
        match applied {
            Some(applied) => {
                assert_eq!(applied, "wait=3");
                assert!(took >= Duration::from_millis(2500), "a wait ended early: {took:?}");
                held += 1;
            }
            None => {
                assert!(took < Duration::from_millis(1500), "an unheld submit took {took:?}");
                at_once += 1;
            }
        }
    }
    let (status, applied, took) = bob.await.unwrap();
    println!("alice: {held} waits held, {at_once} answered at once; bob's wait held {took:?}");
    assert_eq!((held, at_once), (4, 6));
    assert_eq!((status, applied.as_deref()), (202, Some("wait=3")), "another user waits as usual");
    assert_eq!(embeddings_status, 429, "{embeddings_body}");
    assert!(embeddings_body["error"]["message"].as_str().unwrap().contains("INFERPUSH_MAX_WAITS_PER_USER"));
    assert_eq!(stack.queued("all-minilm-l6-v2").await, 0, "no task made for the refused call");
}

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// Opens `GET /v1/events` with a tiny receive buffer and never reads from it.
async fn stalled_stream(addr: &str, key: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let head = format!(
        "GET /v1/events HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Streams whose clients never read, as many as one user may hold, while results of ~95 KiB
/// flow: each is cut off once it falls a megabyte behind, the api's memory stays bounded,
/// and another user's stream and requests carry on.
#[tokio::test]
async fn streams_that_never_read_are_cut_off_and_the_api_memory_stays_bounded() {
    let mut stack = Stack::start_with(StackOptions { prefetch: 16, ..Default::default() }).await;
    let addr = stack.api_url.trim_start_matches("http://").to_owned();
    let api_pid = stack.pids().into_iter().find(|(name, _)| *name == "api").unwrap().1;
    let metrics = stack.api_metrics_url().await;
    let mut stalled = Vec::new();
    for _ in 0..16 {
        stalled.push(stalled_stream(&addr, "dev-alice").await);
    }
    let bobs_url = format!("{}/v1/events", stack.api_url);
    let mut bobs =
        inferpush_integration_tests::sse::open(stack.http(), &bobs_url, "dev-bob", None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_bytes(api_pid);

    let text = "x".repeat(95 * 1024);
    let mut peak = before;
    let mut accepted = Vec::new();
    for i in 0..400 {
        let (status, body) = stack.submit("dev-alice", "echo", json!({"text": text, "i": i})).await;
        assert_eq!(status, 202, "{body}");
        accepted.push(body["task_id"].as_str().unwrap().to_owned());
        if i % 20 == 0 {
            peak = peak.max(rss_bytes(api_pid));
        }
    }
    let api = stack.api_client("dev-alice");
    inferpush_integration_tests::accounting::wait_final(&api, &accepted, Duration::from_secs(120)).await;
    peak = peak.max(rss_bytes(api_pid));

    // Bob is served as usual: his task's events reach his stream at once.
    let started = Instant::now();
    let (status, body) = stack.submit("dev-bob", "echo", json!({"text": "hello"})).await;
    assert_eq!(status, 202, "{body}");
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), bobs.recv()).await.unwrap().unwrap();
        if event.event == "inference.completed" && event.data.contains(body["task_id"].as_str().unwrap()) {
            break;
        }
    }
    let bobs_latency = started.elapsed();
    let cut: f64 = inferpush_integration_tests::metrics::Scrape::of(&metrics)
        .await
        .value("inferpush_api_event_streams_cut_off_total");
    let grown = peak.saturating_sub(before);
    println!(
        "16 stalled streams, 400 results of 95 KiB (~37 MiB through each stream): {cut} streams cut off; \
         api RSS {} MiB before, peak {} MiB (+{} MiB); bob's task end to end {bobs_latency:?}",
        before >> 20,
        peak >> 20,
        grown >> 20
    );
    assert_eq!(cut, 16.0, "every stalled stream was cut off");
    // The bound: the live feed's ring (256 events) + per stream its outbox (1 MiB), a page
    // (16 events) and the connection's write buffer; ~25 + 16 × 3 MiB ≈ 73 MiB.
    assert!(grown < 80 << 20, "the api grew {} MiB", grown >> 20);
    assert!(bobs_latency < Duration::from_secs(2), "bob waited {bobs_latency:?}");
    drop(stalled);
}
