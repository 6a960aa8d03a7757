//! Delivery over MQTT: each event published at QoS 1 to `{prefix}/{user}/events` as
//! `{"event": "inference.completed", "data": {…}}`, counted delivered only once the
//! broker acknowledged it (PUBACK).
//!
//! rumqttc drives the connection; one task polls its event loop and pairs each PUBACK
//! with the publish that caused it. Publishes are handed over under a lock, so the order
//! of the waiting list is the order rumqttc sends them in, and the packet id it gives
//! each (reported as it is written) names its waiter. When the connection drops, the
//! publishes it took down with it (unacknowledged, or not yet written) are reported lost
//! and their senders publish again once it is back; the session is always a clean one,
//! so rumqttc itself replays nothing and an event goes out once per attempt. The result:
//! at least once, through broker restarts, until the sink's deadline.
//!
//! What the sink holds is bounded by bytes, not by rumqttc's count of requests: an event
//! is handed over only while the broker is connected, and only within
//! [`MAX_QUEUED_BYTES`] of events handed over and not yet acknowledged. While the broker
//! is down, events wait in their own deliveries, which their deadline ends: nothing that
//! passed its deadline piles up to be sent when the broker is back.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::{DeltaEvent, EventName, SinkKind, TaskRecord};
use inferpush_service::TrustedCas;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, Request, TlsConfiguration, Transport,
};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::event::result_event;
use super::{EventSink, PushError, jittered};

const FIRST_RETRY: Duration = Duration::from_millis(200);
const LONGEST_RETRY: Duration = Duration::from_secs(5);
/// Publishes handed to rumqttc and not yet written, at most (the byte bound comes first).
const REQUEST_CAPACITY: usize = 10_000;
/// Bytes of events handed over and not yet acknowledged, at most.
pub const MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;

/// Where and as whom to publish.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS), optionally with `user:password@`.
    pub url: String,
    /// The user name (wins over the URL's).
    pub username: Option<String>,
    /// The password (wins over the URL's).
    pub password: Option<String>,
    /// Topics are `{prefix}/{user}/events`.
    pub topic_prefix: String,
    /// Authorities an `mqtts://` broker's certificate may chain to, besides the system's.
    pub trusted: TrustedCas,
    /// Largest event data published inline; larger results go out as `result_url`.
    pub max_event_bytes: usize,
    /// Prefix of `result_url`.
    pub result_base_url: String,
}

impl MqttSettings {
    fn options(&self) -> Result<MqttOptions, String> {
        let url = url::Url::parse(&self.url).map_err(|e| format!("INFERPUSH_MQTT_URL is not a URL: {e}"))?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                return Err(format!("INFERPUSH_MQTT_URL: the scheme must be mqtt or mqtts, not `{other}`"));
            }
        };
        let host = url.host_str().ok_or("INFERPUSH_MQTT_URL has no host")?.trim_matches(['[', ']']);
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        let client_id = format!("inferpush-worker-{}", uuid::Uuid::new_v4().simple());
        let mut options = MqttOptions::new(client_id, host, port);
        options
            .set_keep_alive(Duration::from_secs(15))
            .set_clean_session(true)
            .set_max_packet_size(self.max_event_bytes + 64 * 1024, self.max_event_bytes + 64 * 1024);
        let decode = |s: &str| percent_decode(s);
        let username =
            self.username.clone().or_else(|| (!url.username().is_empty()).then(|| decode(url.username())));
        let password = self.password.clone().or_else(|| url.password().map(decode));
        if let Some(username) = username {
            options.set_credentials(username, password.unwrap_or_default());
        }
        if tls {
            let config = self.trusted.rustls_client().map_err(|e| format!("MQTT over TLS: {e:#}"))?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config))));
        }
        Ok(options)
    }

    /// The URL without its password, for logs.
    pub fn redacted_url(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("****"));
                url.to_string()
            }
            _ => self.url.clone(),
        }
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

/// What became of one publish.
#[derive(Debug)]
enum Ack {
    /// The broker acknowledged it.
    Acked,
    /// The connection dropped first; publish again.
    Lost,
}

/// One publish waiting for its PUBACK, holding its bytes of the budget until then.
struct Waiter {
    ack: oneshot::Sender<Ack>,
    _bytes: OwnedSemaphorePermit,
}

impl Waiter {
    fn settle(self, ack: Ack) {
        let _ = self.ack.send(ack);
    }
}

/// Publishes waiting for their PUBACK: handed over but not yet written (in order), and
/// written, by packet id.
#[derive(Default)]
struct Waiters {
    unwritten: VecDeque<Waiter>,
    written: HashMap<u16, Waiter>,
}

/// Publishes events to an MQTT broker.
pub struct MqttSink {
    client: AsyncClient,
    waiters: Arc<Mutex<Waiters>>,
    /// Whether the broker is connected now.
    connected: watch::Receiver<bool>,
    /// Bytes that may still be handed over ([`MAX_QUEUED_BYTES`] in all).
    budget: Arc<Semaphore>,
    topic_prefix: String,
    max_event_bytes: usize,
    result_base_url: String,
    abort: CancellationToken,
}

#[derive(Serialize)]
struct Message<'a, T: Serialize> {
    event: &'a str,
    data: &'a T,
}

impl MqttSink {
    /// Starts the connection (in the background: an absent broker delays events, it does
    /// not stop the worker). Fails only on settings that can never work.
    pub fn start(settings: MqttSettings, abort: CancellationToken) -> Result<Self, String> {
        let options = settings.options()?;
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
        let waiters = Arc::new(Mutex::new(Waiters::default()));
        let (connection, connected) = watch::channel(false);
        tokio::spawn(drive(eventloop, waiters.clone(), connection, settings.redacted_url()));
        Ok(Self {
            client,
            waiters,
            connected,
            budget: Arc::new(Semaphore::new(MAX_QUEUED_BYTES)),
            topic_prefix: settings.topic_prefix.trim_end_matches('/').to_owned(),
            max_event_bytes: settings.max_event_bytes,
            result_base_url: settings.result_base_url,
            abort,
        })
    }

    /// The topic a user's events go to.
    pub fn topic(&self, user_id: &str) -> String {
        topic(&self.topic_prefix, user_id)
    }

    /// Waits until the broker is connected and the budget has room for `payload`, then
    /// hands it to rumqttc, in the same order as its waiter. Dropping the future (its
    /// deadline passed) leaves nothing behind.
    async fn hand_over(&self, topic: &str, payload: &[u8]) -> Result<oneshot::Receiver<Ack>, String> {
        let mut connected = self.connected.clone();
        connected.wait_for(|up| *up).await.map_err(|_| "the MQTT connection stopped".to_owned())?;
        let bytes = payload.len().clamp(1, MAX_QUEUED_BYTES) as u32;
        let permit = self.budget.clone().acquire_many_owned(bytes).await.expect("the budget is never closed");
        let (sender, receiver) = oneshot::channel();
        let mut waiters = self.waiters.lock().expect("not poisoned");
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
            .map_err(|e| e.to_string())?;
        waiters.unwritten.push_back(Waiter { ack: sender, _bytes: permit });
        Ok(receiver)
    }

    /// Bytes handed over and not yet acknowledged.
    pub fn queued_bytes(&self) -> usize {
        MAX_QUEUED_BYTES - self.budget.available_permits()
    }
}

/// `{prefix}/{user}/events`.
pub fn topic(prefix: &str, user_id: &str) -> String {
    format!("{}/{user_id}/events", prefix.trim_end_matches('/'))
}

#[async_trait]
impl EventSink for MqttSink {
    fn kind(&self) -> SinkKind {
        SinkKind::Mqtt
    }

    async fn deliver(&self, record: &TaskRecord) -> Result<(), PushError> {
        let (event, _) = result_event(record, self.max_event_bytes, &self.result_base_url, None);
        let Some(name) = event.event_name() else {
            return Ok(());
        };
        let payload =
            serde_json::to_vec(&Message { event: name, data: &event }).expect("events always serialise");
        self.publish(record, &payload).await
    }

    /// Deltas go at QoS 1 like every other event: MQTT keeps order only within one QoS, and
    /// a lost delta would leave a hole in the text a client shows.
    async fn deliver_delta(&self, record: &TaskRecord, delta: &DeltaEvent) -> Result<(), PushError> {
        let payload = serde_json::to_vec(&Message { event: EventName::DELTA, data: delta })
            .expect("events always serialise");
        self.publish(record, &payload).await
    }
}

impl MqttSink {
    /// Publishes `payload` on the owner's topic at QoS 1, retrying until the broker has it
    /// or the worker stops.
    async fn publish(&self, record: &TaskRecord, payload: &[u8]) -> Result<(), PushError> {
        let topic = self.topic(&record.user_id);
        let mut wait = FIRST_RETRY;
        loop {
            let handed = tokio::select! {
                _ = self.abort.cancelled() => return Err(PushError::Aborted),
                handed = self.hand_over(&topic, payload) => handed,
            };
            let reason = match handed {
                Err(reason) => reason,
                Ok(ack) => tokio::select! {
                    _ = self.abort.cancelled() => return Err(PushError::Aborted),
                    ack = ack => match ack {
                        Ok(Ack::Acked) => return Ok(()),
                        Ok(Ack::Lost) | Err(_) => "the connection to the broker dropped before its PUBACK".to_owned(),
                    },
                },
            };
            let retry_in = jittered(wait);
            tracing::warn!(task_id = %record.task_id, reason, retry_in_ms = retry_in.as_millis() as u64, "MQTT publish failed");
            tokio::select! {
                _ = self.abort.cancelled() => return Err(PushError::Aborted),
                _ = tokio::time::sleep(retry_in) => {}
            }
            wait = (wait * 2).min(LONGEST_RETRY);
        }
    }
}

/// Polls the connection for ever, pairing acknowledgements with waiters and reporting
/// lost publishes when it drops; reconnects with backoff.
async fn drive(
    mut eventloop: EventLoop,
    waiters: Arc<Mutex<Waiters>>,
    connection: watch::Sender<bool>,
    url: String,
) {
    let mut wait = FIRST_RETRY;
    let mut connected = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                tracing::info!(broker = url, "connected to the MQTT broker");
                connected = true;
                connection.send_replace(true);
                wait = FIRST_RETRY;
            }
            Ok(Event::Outgoing(Outgoing::Publish(packet_id))) => {
                let mut waiters = waiters.lock().expect("not poisoned");
                if !waiters.written.contains_key(&packet_id)
                    && let Some(waiter) = waiters.unwritten.pop_front()
                {
                    waiters.written.insert(packet_id, waiter);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(waiter) = waiters.lock().expect("not poisoned").written.remove(&ack.pkid) {
                    waiter.settle(Ack::Acked);
                }
            }
            Ok(_) => {}
            Err(error) => {
                // rumqttc moved what the connection held (written and unacknowledged, then
                // not yet written) into `pending`; the clean session drops it, so report
                // those as lost: the oldest waiters, in that order.
                let lost = eventloop.pending.iter().filter(|r| matches!(r, Request::Publish(_))).count();
                eventloop.pending.clear();
                {
                    let mut waiters = waiters.lock().expect("not poisoned");
                    let written: Vec<_> = waiters.written.drain().map(|(_, w)| w).collect();
                    let unwritten = lost.saturating_sub(written.len()).min(waiters.unwritten.len());
                    let dropped: Vec<_> = waiters.unwritten.drain(..unwritten).collect();
                    for waiter in written.into_iter().chain(dropped) {
                        waiter.settle(Ack::Lost);
                    }
                }
                connection.send_replace(false);
                if connected {
                    tracing::warn!(broker = url, %error, "lost the MQTT broker; reconnecting");
                } else {
                    tracing::warn!(broker = url, %error, retry_in_ms = wait.as_millis() as u64, "cannot reach the MQTT broker");
                }
                connected = false;
                tokio::time::sleep(jittered(wait)).await;
                wait = (wait * 2).min(LONGEST_RETRY);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> MqttSettings {
        MqttSettings {
            url: url.into(),
            username: None,
            password: None,
            topic_prefix: "inferpush".into(),
            trusted: TrustedCas::default(),
            max_event_bytes: 1000,
            result_base_url: String::new(),
        }
    }

    #[test]
    fn urls_give_host_port_credentials_and_tls() {
        let plain = settings("mqtt://worker:s%40cret@broker.internal:1884").options().unwrap();
        assert_eq!(plain.broker_address(), ("broker.internal".to_owned(), 1884));
        let login = plain.credentials().unwrap();
        assert_eq!((login.username.as_str(), login.password.as_str()), ("worker", "s@cret"));
        let default_port = settings("mqtt://127.0.0.1").options().unwrap();
        assert_eq!(default_port.broker_address().1, 1883);
        assert!(default_port.credentials().is_none());
        assert!(settings("http://broker").options().unwrap_err().contains("mqtt or mqtts"));
        let mut overridden = settings("mqtt://a:b@h");
        overridden.password = Some("from-env".into());
        assert_eq!(overridden.options().unwrap().credentials().unwrap().password, "from-env");
        assert_eq!(settings("mqtt://a:b@h:1883").redacted_url(), "mqtt://a:****@h:1883");
    }

    /// While the broker is down nothing is handed over: deliveries wait (until their
    /// deadline drops them), and the sink holds no bytes for them.
    #[tokio::test]
    async fn while_the_broker_is_down_events_wait_in_their_deliveries_not_in_a_queue() {
        // Port 1: nothing listens, the connection never comes up.
        let sink = MqttSink::start(settings("mqtt://127.0.0.1:1"), CancellationToken::new()).unwrap();
        let payload = vec![b'x'; 90 * 1024];
        for _ in 0..50 {
            let handed =
                tokio::time::timeout(Duration::from_millis(5), sink.hand_over("t/alice/events", &payload));
            assert!(handed.await.is_err(), "handed over to a broker that is down");
        }
        assert_eq!(sink.queued_bytes(), 0);
        assert!(sink.waiters.lock().unwrap().unwritten.is_empty());
    }

    #[test]
    fn topics_are_per_user() {
        assert_eq!(topic("inferpush", "alice"), "inferpush/alice/events");
        assert_eq!(topic("acme/prod/", "bob"), "acme/prod/bob/events");
    }
}
