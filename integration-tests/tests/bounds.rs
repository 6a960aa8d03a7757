//! Resource bounds of the running api: what one client can hold must not hurt the others.

use std::time::{Duration, Instant};

use inferpush_integration_tests::process::{Service, bin_dir};
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
