//! A webhook receiver for the tests (`python/webhook_receiver.py`), verifying signatures
//! with the Standard Webhooks reference library from PyPI (installed once into the cache
//! by `scripts/venv.sh`); every attempt it saw, as it reported it.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::process::{pinned_python, workspace_root};

/// The reference library, pinned.
const LIBRARY: &str = "standardwebhooks==1.1.0";

/// One request the receiver got.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Attempt {
    /// `/flaky`, `/ok` or `/gone`.
    pub path: String,
    /// Its `webhook-id`.
    pub id: String,
    /// Whether the signature verified.
    pub verified: bool,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The task it was about.
    pub task_id: Option<String>,
    /// What the receiver answered.
    pub status: u16,
}

/// The running receiver; stopped on drop.
pub struct WebhookReceiver {
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    attempts: Arc<Mutex<Vec<Attempt>>>,
    _child: Child,
}

impl WebhookReceiver {
    /// Starts the receiver, verifying with `secret`.
    pub async fn start(secret: &str) -> Self {
        let python = pinned_python("standardwebhooks", LIBRARY);
        let mut child = Command::new(python)
            .arg(workspace_root().join("integration-tests/python/webhook_receiver.py"))
            .env("WEBHOOK_SECRET", secret)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the webhook receiver");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the receiver starts")
            .expect("reading its output")
            .expect("a first line");
        let port = first.strip_prefix("listening ").expect("`listening PORT`").to_owned();
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let seen = attempts.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str(&line) {
                    Ok(attempt) => seen.lock().unwrap().push(attempt),
                    Err(error) => eprintln!("webhook receiver: {error}: {line}"),
                }
            }
        });
        Self { url: format!("http://127.0.0.1:{port}"), attempts, _child: child }
    }

    /// Every attempt so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().unwrap().clone()
    }

    /// Waits until `done` holds of the attempts (or fails after `timeout`).
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&[Attempt]) -> bool) -> Vec<Attempt> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let attempts = self.attempts();
            if done(&attempts) {
                return attempts;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the webhooks did not arrive in time: {attempts:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
