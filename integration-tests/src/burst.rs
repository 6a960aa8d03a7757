//! Many submits at once, in the background, retrying as a well-behaved client does, so a
//! fault can strike in the middle.
//!
//! Every submit carries its own `Idempotency-Key` and is retried with the same key on
//! the answers the api marks as passing (a 503 or a 409 with `Retry-After`), and on the
//! ones a balancer gives when a replica died under the request (502, 504, a broken
//! connection): with the key, a retry can never make a second task.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// How a burst went.
#[derive(Debug, Default, Clone)]
pub struct BurstReport {
    /// Task ids that got a 202, in submission order.
    pub accepted: Vec<String>,
    /// 503 answers received (and retried) along the way.
    pub unavailable: usize,
    /// Other retried failures: 409 (the key's first request still in hand), 502/504 from
    /// a balancer, broken connections.
    pub retried: usize,
    /// Submits that never got a 202 before giving up.
    pub gave_up: usize,
}

/// One submit's retries.
#[derive(Default)]
struct Attempts {
    unavailable: usize,
    retried: usize,
}

/// Submits `count` echo tasks with `input(i)`, `concurrency` at a time, each lane pausing
/// `pause` after each accepted task (so a burst can be made to last through a fault).
pub fn spawn_burst(
    api_url: String,
    api_key: &'static str,
    count: usize,
    concurrency: usize,
    pause: Duration,
    input: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> JoinHandle<BurstReport> {
    let progress = Arc::new(AtomicUsize::new(0));
    spawn_burst_counting(api_url, api_key, count, concurrency, pause, input, progress)
}

/// [`spawn_burst`], counting the submits accepted so far in `progress` (a fault can then
/// strike while submits are surely in flight).
pub fn spawn_burst_counting(
    api_url: String,
    api_key: &'static str,
    count: usize,
    concurrency: usize,
    pause: Duration,
    input: impl Fn(usize) -> Value + Send + Sync + 'static,
    progress: Arc<AtomicUsize>,
) -> JoinHandle<BurstReport> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
        let gate = Arc::new(Semaphore::new(concurrency));
        let input = Arc::new(input);
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut handles = Vec::with_capacity(count);
        for i in 0..count {
            let permit = gate.clone().acquire_owned().await.expect("open");
            let (http, url, input, progress) =
                (http.clone(), api_url.clone(), input.clone(), progress.clone());
            let key = format!("burst-{run}-{i}");
            handles.push(tokio::spawn(async move {
                let _permit = permit;
                let body = json!({"model": "echo", "input": input(i)});
                let mut attempts = Attempts::default();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
                while tokio::time::Instant::now() < deadline {
                    let sent = http
                        .post(format!("{url}/v1/inference"))
                        .bearer_auth(api_key)
                        .header("idempotency-key", &key)
                        .json(&body)
                        .send()
                        .await;
                    let (status, retry_after) = match sent {
                        Ok(response) if response.status() == 202 => {
                            let accepted: Value = response.json().await.expect("JSON");
                            progress.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(pause).await;
                            let id = accepted["task_id"].as_str().expect("task_id").to_owned();
                            return (Some(id), attempts);
                        }
                        Ok(response) => {
                            (response.status().as_u16(), response.headers().contains_key("retry-after"))
                        }
                        // The api timed out on a broken broker connection, or its replica died.
                        Err(_) => (0, false),
                    };
                    if matches!(status, 409 | 503) {
                        assert!(retry_after, "{status} without Retry-After");
                    }
                    match status {
                        503 => attempts.unavailable += 1,
                        0 | 409 | 502 | 504 => attempts.retried += 1,
                        other => panic!("unexpected {other} from submit"),
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                (None, attempts)
            }));
        }
        let mut report = BurstReport::default();
        for handle in handles {
            let (id, attempts) = handle.await.expect("submit task");
            report.unavailable += attempts.unavailable;
            report.retried += attempts.retried;
            match id {
                Some(id) => report.accepted.push(id),
                None => report.gave_up += 1,
            }
        }
        report
    })
}
