//! What the api knows of delivery: the sinks the deployment turned on (to validate a
//! task's choice and say where its events go), which webhook targets are allowed, and the
//! users' event logs with one live feed per replica ([`LiveHub`]) that every server-sent
//! event stream of this replica listens to.

use std::sync::Arc;

use futures::StreamExt;
use inferpush_protocol::{SinkKind, WebhookTargets};
use inferpush_store::EventLog;
use inferpush_store::events::Live;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::limits::UserSlots;

/// Events a stream's task may fall behind the live feed before it replays from the log.
/// Streams never wait on their clients while reading the feed (each has its own bounded
/// outbox), so the feed's ring holds only what is not yet dispatched: at most this many
/// events (~25 MiB at the largest, ~100 KiB each).
const LIVE_BUFFER: usize = 256;

/// Delivery, as the api sees it.
pub struct DeliveryState {
    /// The sinks this deployment turned on (`INFERPUSH_SINKS`).
    pub enabled: Vec<SinkKind>,
    /// Which private or loopback webhook targets are allowed.
    pub webhook_targets: WebhookTargets,
    /// MQTT topics are `{prefix}/{user}/events`.
    pub mqtt_topic_prefix: String,
    /// The users' event logs (server-sent events replay from them).
    pub events: Arc<dyn EventLog>,
    /// This replica's live feed of every user's events.
    pub live: LiveHub,
    /// The streams each user holds open on this replica, and how many they may.
    pub streams: UserSlots,
}

impl DeliveryState {
    /// Delivery on `events`, each user holding at most `max_streams_per_user` streams;
    /// starts the live feed when server-sent events are on.
    pub fn new(
        enabled: Vec<SinkKind>,
        webhook_targets: WebhookTargets,
        mqtt_topic_prefix: String,
        events: Arc<dyn EventLog>,
        max_streams_per_user: usize,
    ) -> Self {
        let live =
            if enabled.contains(&SinkKind::Sse) { LiveHub::start(events.as_ref()) } else { LiveHub::idle() };
        let streams = UserSlots::new(max_streams_per_user);
        Self { enabled, webhook_targets, mqtt_topic_prefix, events, live, streams }
    }

    /// Whether `kind` is on.
    pub fn is_on(&self, kind: SinkKind) -> bool {
        self.enabled.contains(&kind)
    }
}

/// One subscription per replica to every user's live events, shared by all of the
/// replica's streams.
#[derive(Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<Live>,
    closing: CancellationToken,
}

impl LiveHub {
    /// Follows `log`'s live feed for as long as the process runs.
    fn start(log: &dyn EventLog) -> Self {
        let hub = Self::idle();
        let (sender, mut feed) = (hub.sender.clone(), log.live());
        tokio::spawn(async move {
            while let Some(live) = feed.next().await {
                // No receiver is fine: no stream is open on this replica.
                let _ = sender.send(live);
            }
        });
        hub
    }

    /// A hub that never says anything (server-sent events off).
    fn idle() -> Self {
        Self { sender: broadcast::channel(LIVE_BUFFER).0, closing: CancellationToken::new() }
    }

    /// Ends every stream of this replica (it is shutting down).
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Resolves when the replica shuts down.
    pub async fn closed(&self) {
        self.closing.cancelled().await;
    }

    /// Listens from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.sender.subscribe()
    }
}
