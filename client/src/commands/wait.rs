//! Waiting for a task's end: its events over the Pusher protocol (the subscription comes
//! after the 202, which names the channel, so the status API is read once after subscribing:
//! a result that beat the subscription is found there), or the status API every second when
//! the WebSocket fails. A generation's text goes to stdout as its deltas arrive; a delta
//! missed (a gap in `seq`) is made up from the status API's `progress`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use inferpush_client::api::ApiClient;
use inferpush_client::pusher::PusherClient;
use inferpush_client::transcript::{Applied, Transcript};
use inferpush_protocol::http::Accepted;
use inferpush_protocol::{DeltaEvent, EventName, InferenceEvent, TaskRecord};
use serde_json::Value;
use tokio::time::Instant;

use crate::Connection;

/// The task's final event, with a generation's text written to stdout meanwhile.
pub async fn wait(
    connection: &Connection,
    api: &ApiClient,
    accepted: &Accepted,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let mut watch = Watch::new(accepted);
    let result = wait_for(connection, api, accepted, timeout, &mut watch).await;
    watch.spinner.finish_and_clear();
    let event = result?;
    if let Some(text) = generated_text(&event) {
        watch.transcript.text = text.to_owned();
        watch.show();
    }
    if watch.streamed() {
        println!();
    }
    Ok(Outcome { event, streamed: watch.streamed() })
}

/// How the wait ended.
pub struct Outcome {
    /// The final event.
    pub event: InferenceEvent,
    /// Whether the text was written to stdout (the output is not to be printed again).
    pub streamed: bool,
}

/// A generation's text in a task's output.
pub fn generated_text(event: &InferenceEvent) -> Option<&str> {
    let output = event.output.as_ref()?;
    output.get("finish_reason")?;
    output.get("text").and_then(Value::as_str)
}

/// What is shown while waiting: a spinner until text arrives, then the text.
struct Watch {
    spinner: ProgressBar,
    transcript: Transcript,
    /// What stdout has of the text.
    shown: String,
    printed_any: bool,
}

impl Watch {
    fn new(accepted: &Accepted) -> Self {
        let spinner = ProgressBar::new_spinner();
        spinner
            .set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template"));
        spinner.set_message(format!(
            "task {} queued, waiting for its result on {}",
            accepted.task_id, accepted.channel
        ));
        spinner.enable_steady_tick(Duration::from_millis(100));
        Self { spinner, transcript: Transcript::default(), shown: String::new(), printed_any: false }
    }

    fn streamed(&self) -> bool {
        self.printed_any
    }

    /// Writes what stdout does not have of the text yet.
    fn show(&mut self) {
        let text = &self.transcript.text;
        if !text.starts_with(&self.shown) {
            // A later attempt started the text again (its worker died mid-generation).
            println!();
            eprintln!("[the task started again on another worker]");
            self.shown.clear();
        }
        if text.len() == self.shown.len() {
            return;
        }
        if !self.printed_any {
            self.spinner.finish_and_clear();
            self.printed_any = true;
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&text.as_bytes()[self.shown.len()..]);
        let _ = stdout.flush();
        self.shown.clone_from(text);
    }

    fn record(&mut self, record: &TaskRecord) {
        if let Some(progress) = &record.progress
            && self.transcript.apply_progress(progress)
        {
            self.show();
        }
    }
}

async fn wait_for(
    connection: &Connection,
    api: &ApiClient,
    accepted: &Accepted,
    timeout: Duration,
    watch: &mut Watch,
) -> anyhow::Result<InferenceEvent> {
    let deadline = Instant::now() + timeout;
    let mut live = match subscribe(connection, api, &accepted.channel.to_string()).await {
        Ok(client) => Some(client),
        Err(error) => {
            watch.spinner.println(format!("live results unavailable ({error:#}); polling the status API"));
            None
        }
    };
    let record = api.task(&accepted.status_url).await?;
    if record.status.is_final() {
        return Ok(record.event());
    }
    watch.record(&record);
    while Instant::now() < deadline {
        let Some(client) = live.as_mut() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let record = api.task(&accepted.status_url).await?;
            if record.status.is_final() {
                return Ok(record.event());
            }
            watch.record(&record);
            continue;
        };
        let message = match tokio::time::timeout(Duration::from_secs(1), client.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) => {
                watch.spinner.println("the WebSocket closed; polling the status API");
                live = None;
                continue;
            }
            Err(_) => continue,
        };
        if message.event == EventName::DELTA {
            let Ok(delta) = serde_json::from_value::<DeltaEvent>(message.json()) else { continue };
            if delta.task_id != accepted.task_id {
                continue;
            }
            match watch.transcript.apply_delta(&delta) {
                Applied::Appended | Applied::Restarted => watch.show(),
                Applied::Gap => watch.record(&api.task(&accepted.status_url).await?),
                Applied::Ignored => {}
            }
            continue;
        }
        if !message.event.starts_with("inference.") {
            continue;
        }
        let Ok(event) = serde_json::from_value::<InferenceEvent>(message.json()) else {
            continue;
        };
        if event.task_id != accepted.task_id {
            continue;
        }
        if !event.status.is_final() {
            watch.spinner.set_message(format!("task {} running on a worker", accepted.task_id));
            continue;
        }
        // A result too large for one event waits at the status endpoint.
        return match event.result_url {
            Some(_) => Ok(api.task(&accepted.status_url).await?.event()),
            None => Ok(event),
        };
    }
    anyhow::bail!(
        "no result after {} s; the task may still finish: `inferpush status {}`",
        timeout.as_secs(),
        accepted.task_id
    )
}

async fn subscribe(connection: &Connection, api: &ApiClient, channel: &str) -> anyhow::Result<PusherClient> {
    let mut client = PusherClient::connect(&connection.ws_url, &connection.pusher_key)
        .await
        .with_context(|| format!("connecting to {}", connection.ws_url))?;
    let auth = api.channel_auth(&client.socket_id, channel).await.context("authorising the subscription")?;
    client.subscribe(channel, &auth.auth, None).await?;
    Ok(client)
}
