//! A minimal server-sent events reader for the Rust tests and the load generator: opens a
//! stream with a bearer token (and a `Last-Event-ID`), and hands over each event with its
//! arrival time.

use std::time::Instant;

use futures::StreamExt;
use tokio::sync::mpsc;

/// One event as it arrived.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// Its `id`, if it had one.
    pub id: Option<String>,
    /// Its `event` name.
    pub event: String,
    /// Its `data`.
    pub data: String,
    /// When its last byte arrived.
    pub at: Instant,
}

/// Opens `url` and delivers its events until the stream ends or the receiver is dropped.
pub async fn open(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    last_event_id: Option<&str>,
) -> anyhow::Result<mpsc::UnboundedReceiver<SseEvent>> {
    let mut request = http.get(url).bearer_auth(token).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await?;
    anyhow::ensure!(response.status() == 200, "GET {url} answered {}", response.status());
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut text = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            let at = Instant::now();
            text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let field = |name: &str| {
                    block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim_start().to_owned())
                };
                if let (Some(event), Some(data)) = (field("event:"), field("data:"))
                    && sender.send(SseEvent { id: field("id:"), event, data, at }).is_err()
                {
                    return;
                }
            }
        }
    });
    Ok(receiver)
}
