//! A small Pusher Channels WebSocket client (protocol 7), as a browser's pusher-js
//! would speak it: connect, answer pings, subscribe with a signature, receive events, and
//! notice a dead connection the way pusher-js does ([`Liveness`]): a server that vanished
//! without closing the socket (a killed container, a dropped network) ends the stream
//! instead of leaving the client waiting forever.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// One message from the server, with `data` as the text it carried.
#[derive(Debug, Clone)]
pub struct PusherMessage {
    /// e.g. `inference.completed`, `pusher_internal:subscription_succeeded`.
    pub event: String,
    /// The channel, for channel events.
    pub channel: Option<String>,
    /// The data: for channel events, a JSON document serialised as a string.
    pub data: String,
}

impl PusherMessage {
    /// `data` parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::String(self.data.clone()))
    }
}

/// How a client notices that its connection died: after `activity` with nothing received
/// it sends `pusher:ping`; when nothing comes back within `pong`, it gives the connection
/// up (`recv` answers `None`). pusher-js's defaults are 120 s (or the server's
/// `activity_timeout`, if shorter) and 30 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Quiet time before a ping.
    pub activity: Duration,
    /// Time a ping has to be answered.
    pub pong: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self { activity: Duration::from_secs(30), pong: Duration::from_secs(30) }
    }
}

/// Longest wait for the TCP and WebSocket handshakes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected client.
pub struct PusherClient {
    /// The id the server gave this connection; channel signatures cover it.
    pub socket_id: String,
    outgoing: mpsc::UnboundedSender<Message>,
    incoming: mpsc::UnboundedReceiver<PusherMessage>,
}

fn parse(text: &str) -> Option<PusherMessage> {
    let value: Value = serde_json::from_str(text).ok()?;
    let data = match value.get("data") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    Some(PusherMessage {
        event: value.get("event")?.as_str()?.to_owned(),
        channel: value.get("channel").and_then(Value::as_str).map(str::to_owned),
        data,
    })
}

impl PusherClient {
    /// Connects to `ws://host:port/app/{key}` and waits for `pusher:connection_established`,
    /// with the default [`Liveness`].
    pub async fn connect(ws_base: &str, app_key: &str) -> anyhow::Result<Self> {
        Self::connect_with(ws_base, app_key, Liveness::default()).await
    }

    /// [`Self::connect`] with its own dead-connection timing.
    pub async fn connect_with(ws_base: &str, app_key: &str, liveness: Liveness) -> anyhow::Result<Self> {
        let url = format!("{ws_base}/app/{app_key}?protocol=7&client=inferpush-rust&version=0.1.0");
        // A SYN lost to a server that is coming back would otherwise wait out the kernel's
        // retries (minutes): give up and let the caller try again.
        let (socket, _) =
            tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::connect_async(url)).await.map_err(
                |_| anyhow::anyhow!("the WebSocket handshake took longer than {HANDSHAKE_TIMEOUT:?}"),
            )??;
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<Message>();
        let (deliver, mut incoming) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = to_send.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pong = outgoing.clone();
        tokio::spawn(async move {
            let mut pinged = false;
            loop {
                let quiet = if pinged { liveness.pong } else { liveness.activity };
                let message = match tokio::time::timeout(quiet, stream.next()).await {
                    Ok(Some(Ok(message))) => message,
                    // Closed, failed, or silent past the ping: the connection is gone.
                    Ok(_) => break,
                    Err(_) if pinged => break,
                    Err(_) => {
                        pinged = true;
                        let ping = json!({"event": "pusher:ping", "data": {}}).to_string();
                        let _ = pong.send(Message::text(ping));
                        continue;
                    }
                };
                pinged = false;
                let Message::Text(text) = message else {
                    continue;
                };
                let Some(parsed) = parse(&text) else { continue };
                if parsed.event == "pusher:ping" {
                    let _ = pong.send(Message::text(json!({"event": "pusher:pong", "data": {}}).to_string()));
                    continue;
                }
                if deliver.send(parsed).is_err() {
                    break;
                }
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(10), incoming.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("connection closed before it was established"))?;
        anyhow::ensure!(first.event == "pusher:connection_established", "unexpected first message {first:?}");
        let socket_id = first.json()["socket_id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no socket_id in {first:?}"))?
            .to_owned();
        Ok(Self { socket_id, outgoing, incoming })
    }

    /// Sends `pusher:subscribe` with the given `auth` (and `channel_data` for presence)
    /// and waits for the server's verdict: `Ok` on subscription_succeeded, `Err` with the
    /// server's message on an error.
    pub async fn subscribe(
        &mut self,
        channel: &str,
        auth: &str,
        channel_data: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut data = json!({"channel": channel, "auth": auth});
        if let Some(channel_data) = channel_data {
            data["channel_data"] = Value::String(channel_data.to_owned());
        }
        let frame = json!({"event": "pusher:subscribe", "data": data}).to_string();
        self.outgoing.send(Message::text(frame)).map_err(|_| anyhow::anyhow!("connection closed"))?;
        loop {
            let message = self
                .next(Duration::from_secs(10))
                .await
                .ok_or_else(|| anyhow::anyhow!("no answer to the subscription of {channel}"))?;
            match message.event.as_str() {
                "pusher_internal:subscription_succeeded" if message.channel.as_deref() == Some(channel) => {
                    return Ok(());
                }
                "pusher:subscription_error" | "pusher:error" => {
                    anyhow::bail!("subscription refused: {}", message.data)
                }
                _ => {}
            }
        }
    }

    /// The next message, waiting as long as it takes; `None` once the connection closed.
    pub async fn recv(&mut self) -> Option<PusherMessage> {
        self.incoming.recv().await
    }

    /// The next message, or `None` after `timeout` (or when the connection closed).
    pub async fn next(&mut self, timeout: Duration) -> Option<PusherMessage> {
        tokio::time::timeout(timeout, self.incoming.recv()).await.ok().flatten()
    }

    /// The next event named `event`, skipping others, or `None` after `timeout`.
    pub async fn next_event(&mut self, event: &str, timeout: Duration) -> Option<PusherMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let message = self.next(left).await?;
            if message.event == event {
                return Some(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that establishes the connection, then falls silent without closing it,
    /// as a killed container does.
    async fn silent_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
            let established = json!({
                "event": "pusher:connection_established",
                "data": json!({"socket_id": "1.2", "activity_timeout": 120}).to_string(),
            });
            socket.send(Message::text(established.to_string())).await.unwrap();
            // Read (and ignore) whatever comes, pings included, and never answer.
            while socket.next().await.is_some() {}
        });
        format!("ws://{addr}")
    }

    #[tokio::test]
    async fn a_silent_server_is_given_up_after_an_unanswered_ping() {
        let liveness = Liveness { activity: Duration::from_millis(200), pong: Duration::from_millis(200) };
        let mut client = PusherClient::connect_with(&silent_server().await, "key", liveness).await.unwrap();
        assert_eq!(client.socket_id, "1.2");
        let started = tokio::time::Instant::now();
        assert!(tokio::time::timeout(Duration::from_secs(5), client.recv()).await.unwrap().is_none());
        assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    }
}
