//! Many submits at once, in the background, retrying 503s as a well-behaved client
//! does after `Retry-After`, so a fault can strike in the middle.

use std::sync::Arc;
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
    /// Submits that never got a 202 before giving up.
    pub gave_up: usize,
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
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("client");
        let gate = Arc::new(Semaphore::new(concurrency));
        let input = Arc::new(input);
        let mut handles = Vec::with_capacity(count);
        for i in 0..count {
            let permit = gate.clone().acquire_owned().await.expect("open");
            let (http, url, input) = (http.clone(), api_url.clone(), input.clone());
            handles.push(tokio::spawn(async move {
                let _permit = permit;
                let body = json!({"model": "echo", "input": input(i)});
                let mut unavailable = 0;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
                while tokio::time::Instant::now() < deadline {
                    let sent = http
                        .post(format!("{url}/v1/inference"))
                        .bearer_auth(api_key)
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 202 => {
                            let accepted: Value = response.json().await.expect("JSON");
                            tokio::time::sleep(pause).await;
                            return (
                                Some(accepted["task_id"].as_str().expect("task_id").to_owned()),
                                unavailable,
                            );
                        }
                        Ok(response) if response.status() == 503 => {
                            assert!(
                                response.headers().contains_key("retry-after"),
                                "503 without Retry-After"
                            );
                            unavailable += 1;
                        }
                        Ok(response) => panic!("unexpected {} from submit", response.status()),
                        // The api itself timed out on a broken broker connection: retry.
                        Err(_) => unavailable += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                (None, unavailable)
            }));
        }
        let mut report = BurstReport::default();
        for handle in handles {
            let (id, unavailable) = handle.await.expect("submit task");
            report.unavailable += unavailable;
            match id {
                Some(id) => report.accepted.push(id),
                None => report.gave_up += 1,
            }
        }
        report
    })
}
