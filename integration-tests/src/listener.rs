//! A Pusher client that stays subscribed in the background, reconnecting whenever its
//! connection drops (e.g. Soketi restarts), and counts every result event it sees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;

use inferpush_client::pusher::{Liveness, PusherClient};

/// Where to connect and as whom.
#[derive(Debug, Clone)]
pub struct ListenerTarget {
    /// `ws://127.0.0.1:{port}` of Soketi.
    pub ws_base: String,
    /// The Pusher app key.
    pub app_key: String,
    /// The api, for `/pusher/auth`.
    pub api_url: String,
    /// The user's API key.
    pub api_key: String,
    /// The channel to stay subscribed to.
    pub channel: String,
}

/// Result events seen so far, by task id, and how often.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// task id → number of `inference.completed` / `inference.failed` events.
    pub results: HashMap<String, usize>,
    /// task id → number of `inference.started` events: how many times a worker ran it.
    pub started: HashMap<String, usize>,
    /// task id → the data of the last such event.
    pub last: HashMap<String, Value>,
    /// How many times the connection was (re)established and subscribed.
    pub subscriptions: usize,
}

/// A background subscriber.
pub struct Listener {
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

async fn connect(target: &ListenerTarget) -> anyhow::Result<PusherClient> {
    // A killed server (a container stopped without closing its sockets) is noticed within
    // seconds, so the listener reconnects as a pusher-js client would, only sooner.
    let liveness = Liveness { activity: Duration::from_secs(2), pong: Duration::from_secs(2) };
    let mut client = PusherClient::connect_with(&target.ws_base, &target.app_key, liveness).await?;
    let body = serde_urlencoded::to_string([
        ("socket_id", client.socket_id.as_str()),
        ("channel_name", target.channel.as_str()),
    ])?;
    let response = reqwest::Client::new()
        .post(format!("{}/pusher/auth", target.api_url))
        .bearer_auth(&target.api_key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "auth answered {}", response.status());
    let auth: Value = response.json().await?;
    let signature = auth["auth"].as_str().ok_or_else(|| anyhow::anyhow!("no auth"))?;
    client.subscribe(&target.channel, signature, None).await?;
    Ok(client)
}

impl Listener {
    /// Subscribes (retrying until it works) and keeps listening until dropped.
    pub async fn start(target: ListenerTarget) -> Self {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                let mut client = match tokio::time::timeout(Duration::from_secs(5), connect(&target)).await {
                    Ok(Ok(client)) => client,
                    Ok(Err(_)) | Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                shared.lock().unwrap().subscriptions += 1;
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                while let Some(message) = client.recv().await {
                    if message.event == "inference.started" {
                        let id = message.json()["task_id"].as_str().unwrap_or_default().to_owned();
                        *shared.lock().unwrap().started.entry(id).or_default() += 1;
                    } else if message.event == "inference.completed" || message.event == "inference.failed" {
                        let data = message.json();
                        let id = data["task_id"].as_str().unwrap_or_default().to_owned();
                        let mut seen = shared.lock().unwrap();
                        *seen.results.entry(id.clone()).or_default() += 1;
                        seen.last.insert(id, data);
                    }
                }
                // The connection closed: reconnect and subscribe again.
            }
        });
        tokio::time::timeout(Duration::from_secs(30), ready_rx)
            .await
            .expect("the listener subscribed within 30 s")
            .expect("the listener task is alive");
        Self { seen, task }
    }

    /// A copy of what was seen so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until results for all of `ids` arrived, or `timeout` passes.
    pub async fn wait_for(&self, ids: &[String], timeout: Duration) -> Seen {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = self.seen();
            if ids.iter().all(|id| seen.results.contains_key(id)) || tokio::time::Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
