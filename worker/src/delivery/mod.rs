//! Delivery: how a task's state reaches its owner once it is safe in the store. Each
//! target is an [`EventSink`]: Pusher through Soketi ([`pusher`]), the event log behind
//! the api's server-sent events ([`sse`]), MQTT ([`mqtt`]) and webhooks ([`webhook`]).
//! A sink gets the stored record and makes its own event from it ([`event`]), so the
//! record is the single source of what is announced.
//!
//! [`Sinks`] hands each event to every sink the task wants, all at once, each under its
//! own deadline: a slow or failing sink never holds up or repeats another, and the task
//! is settled when every sink has its event or gave up.

pub mod event;
pub mod mqtt;
pub mod publisher;
pub mod pusher;
pub mod sse;
pub mod webhook;
pub mod webhook_queue;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use inferpush_protocol::{DeltaEvent, SinkKind, TaskRecord};
use tokio::task::JoinHandle;

/// Why an event was not delivered.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    /// The target refused the event itself (for Soketi, a 4xx other than 429), or it can
    /// never be sent: retrying cannot help. The result stays retrievable by GET.
    #[error("the event was refused: {0}")]
    Rejected(String),
    /// The worker is stopping and gave up waiting for the target.
    #[error("gave up pushing: the worker is stopping")]
    Aborted,
}

/// Somewhere a task's events go.
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Which sink this is.
    fn kind(&self) -> SinkKind;

    /// Announces `record`'s state (started, completed or failed) to its owner, retrying
    /// passing failures until delivered, refused, or aborted.
    async fn deliver(&self, record: &TaskRecord) -> Result<(), PushError>;

    /// Sends more of running `record`'s text; a sink that takes no deltas (webhooks: a
    /// receiver gets `started` and the final event) leaves this as it is.
    async fn deliver_delta(&self, record: &TaskRecord, delta: &DeltaEvent) -> Result<(), PushError> {
        let _ = (record, delta);
        Ok(())
    }
}

/// A sink with how long it may take over one event.
#[derive(Clone)]
pub struct Route {
    /// The sink.
    pub sink: Arc<dyn EventSink>,
    /// How long it keeps retrying an event before giving up on it (the result stays in
    /// the store).
    pub deadline: Duration,
}

/// How an announcement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announced {
    /// Every sink has the event, refused it, or gave up by its deadline.
    Settled,
    /// The worker is stopping: some sink gave up early, so the task goes back to the
    /// queue and the next worker announces the stored result again.
    Aborted,
}

/// The `started` announcements of one task still under way, one per sink, so that a
/// sink's final event never overtakes its `started`.
#[derive(Default)]
pub struct StartedAnnouncements(HashMap<SinkKind, JoinHandle<()>>);

/// Where a running task's deltas go: one ordered lane per sink. Dropping it closes the
/// lanes once they have sent what they hold.
pub struct DeltaLanes {
    senders: Vec<tokio::sync::mpsc::UnboundedSender<DeltaEvent>>,
}

impl DeltaLanes {
    /// Queues `delta` on every lane.
    pub fn send(&self, delta: &DeltaEvent) {
        for sender in &self.senders {
            let _ = sender.send(delta.clone());
        }
    }
}

/// Every sink the deployment turned on.
#[derive(Clone)]
pub struct Sinks {
    routes: Vec<Route>,
    enabled: Vec<SinkKind>,
}

/// How long a `started` announcement may take, at most (it never holds the task up).
const STARTED_WINDOW: Duration = Duration::from_secs(30);

impl Sinks {
    /// The deployment's sinks.
    pub fn new(routes: Vec<Route>) -> Self {
        let enabled = routes.iter().map(|route| route.sink.kind()).collect();
        Self { routes, enabled }
    }

    /// The sinks that are on.
    pub fn enabled(&self) -> &[SinkKind] {
        &self.enabled
    }

    fn wanted<'a>(&'a self, record: &'a TaskRecord) -> impl Iterator<Item = &'a Route> + 'a {
        self.routes
            .iter()
            .filter(|route| record.delivery.wants(route.sink.kind(), record.status, &self.enabled))
    }

    /// Tells the owner a worker started the task, in the background and best-effort: it
    /// never holds the task, and a lost one costs nothing, since the final event and the
    /// status API are what count.
    pub fn announce_started(&self, record: &TaskRecord) -> StartedAnnouncements {
        let mut under_way = HashMap::new();
        for route in self.wanted(record) {
            let (record, route) = (record.clone(), route.clone());
            let kind = route.sink.kind();
            under_way.insert(
                kind,
                tokio::spawn(async move {
                    let window = route.deadline.min(STARTED_WINDOW);
                    let started = Instant::now();
                    let outcome = tokio::time::timeout(window, route.sink.deliver(&record)).await;
                    crate::metrics::delivered(kind, "started", &outcome, started.elapsed());
                }),
            );
        }
        StartedAnnouncements(under_way)
    }

    /// Opens one lane per sink that takes deltas (all but webhooks) for running `record`:
    /// each sends its deltas in order, after that sink's `started`. What comes back in
    /// place of `started` are the lanes themselves, so a final event waits for the last
    /// delta of its sink.
    pub fn delta_lanes(
        &self,
        record: &TaskRecord,
        started: StartedAnnouncements,
    ) -> (DeltaLanes, StartedAnnouncements) {
        let mut started = started.0;
        let mut senders = Vec::new();
        let mut lanes = HashMap::new();
        for route in self.wanted(record).filter(|route| route.sink.kind() != SinkKind::Webhook) {
            let (sender, mut deltas) = tokio::sync::mpsc::unbounded_channel::<DeltaEvent>();
            let (route, record, before) = (route.clone(), record.clone(), started.remove(&route.sink.kind()));
            let kind = route.sink.kind();
            let lane = tokio::spawn(async move {
                if let Some(before) = before {
                    let _ = before.await;
                }
                while let Some(delta) = deltas.recv().await {
                    let began = Instant::now();
                    let outcome =
                        tokio::time::timeout(route.deadline, route.sink.deliver_delta(&record, &delta)).await;
                    crate::metrics::delivered(kind, "delta", &outcome, began.elapsed());
                    if !matches!(outcome, Ok(Ok(()))) {
                        tracing::warn!(task_id = %record.task_id, sink = %kind, seq = delta.seq, ?outcome, "a delta was not delivered; the final event carries the whole text");
                    }
                }
            });
            senders.push(sender);
            lanes.insert(kind, lane);
        }
        // Sinks that take no deltas keep their `started` as it was.
        lanes.extend(started);
        (DeltaLanes { senders }, StartedAnnouncements(lanes))
    }

    /// Announces a final record to every sink it wants, at once, each under its own
    /// deadline; answers when all have settled. The record is already safe, so whatever a
    /// sink does the task is done, unless the worker is stopping.
    pub async fn announce(&self, record: &TaskRecord, started: StartedAnnouncements) -> Announced {
        let mut started = started.0;
        let deliveries = self.wanted(record).map(|route| {
            let before = started.remove(&route.sink.kind());
            announce_one(route, record, before)
        });
        let outcomes = futures::future::join_all(deliveries).await;
        if outcomes.contains(&Err(PushError::Aborted)) { Announced::Aborted } else { Announced::Settled }
    }
}

/// One sink's final event, after its `started` (bounded by the same deadline).
async fn announce_one(
    route: &Route,
    record: &TaskRecord,
    started: Option<JoinHandle<()>>,
) -> Result<(), PushError> {
    let kind = route.sink.kind();
    let began = Instant::now();
    let delivery = async {
        if let Some(started) = started {
            let _ = started.await;
        }
        route.sink.deliver(record).await
    };
    let outcome = tokio::time::timeout(route.deadline, delivery).await;
    crate::metrics::delivered(kind, record.status.as_str(), &outcome, began.elapsed());
    let task_id = record.task_id;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(PushError::Aborted)) => Err(PushError::Aborted),
        Ok(Err(PushError::Rejected(reason))) => {
            tracing::error!(%task_id, sink = %kind, reason, "the event was refused; the result stays retrievable by GET");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(%task_id, sink = %kind, deadline = ?route.deadline, "could not deliver in time; the result stays retrievable by GET");
            Ok(())
        }
    }
}

/// `base` scaled by a random factor in [0.5, 1.5), so retrying workers spread out.
pub(crate) fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + fastrand::f64())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use inferpush_protocol::{Delivery, InferenceChannel, TaskEnvelope, TaskStatus};
    use serde_json::json;

    use super::*;

    /// A sink that records what it got, after `delay`, answering `answer`.
    struct Probe {
        kind: SinkKind,
        delay: Duration,
        answer: Result<(), PushError>,
        got: Mutex<Vec<(TaskStatus, Instant)>>,
    }

    #[async_trait]
    impl EventSink for Probe {
        fn kind(&self) -> SinkKind {
            self.kind
        }
        async fn deliver(&self, record: &TaskRecord) -> Result<(), PushError> {
            tokio::time::sleep(self.delay).await;
            self.got.lock().unwrap().push((record.status, Instant::now()));
            self.answer.clone()
        }
    }

    fn probe(kind: SinkKind, delay_ms: u64, answer: Result<(), PushError>) -> Arc<Probe> {
        Arc::new(Probe { kind, delay: Duration::from_millis(delay_ms), answer, got: Mutex::default() })
    }

    fn route(probe: &Arc<Probe>, deadline_ms: u64) -> Route {
        Route { sink: probe.clone(), deadline: Duration::from_millis(deadline_ms) }
    }

    fn record(status: TaskStatus, delivery: Delivery) -> TaskRecord {
        let task =
            TaskEnvelope::new("alice", "echo", json!({}), InferenceChannel::private("alice").unwrap(), 1)
                .with_delivery(delivery);
        TaskRecord { status, ..TaskRecord::queued(&task) }
    }

    #[tokio::test]
    async fn a_slow_or_failing_sink_holds_up_no_other_and_settles_by_its_deadline() {
        let fast = probe(SinkKind::Pusher, 0, Ok(()));
        let refusing = probe(SinkKind::Sse, 0, Err(PushError::Rejected("no".into())));
        let hanging = probe(SinkKind::Mqtt, 10_000, Ok(()));
        let sinks = Sinks::new(vec![route(&fast, 1000), route(&refusing, 1000), route(&hanging, 200)]);
        let began = Instant::now();
        let outcome =
            sinks.announce(&record(TaskStatus::Succeeded, Delivery::default()), Default::default()).await;
        assert_eq!(outcome, Announced::Settled);
        let took = began.elapsed();
        assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(2), "{took:?}");
        assert_eq!(fast.got.lock().unwrap().len(), 1);
        assert!(
            fast.got.lock().unwrap()[0].1 - began < Duration::from_millis(100),
            "not held by the slow one"
        );
        assert_eq!(refusing.got.lock().unwrap().len(), 1, "refused once, not retried");
        assert!(hanging.got.lock().unwrap().is_empty(), "given up at its deadline");
    }

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d < Duration::from_millis(1500), "{d:?}");
        }
    }

    #[tokio::test]
    async fn an_abort_sends_the_task_back() {
        let stopping = probe(SinkKind::Pusher, 0, Err(PushError::Aborted));
        let sinks = Sinks::new(vec![route(&stopping, 1000)]);
        let outcome =
            sinks.announce(&record(TaskStatus::Failed, Delivery::default()), Default::default()).await;
        assert_eq!(outcome, Announced::Aborted);
    }

    #[tokio::test]
    async fn only_the_sinks_a_task_wants_get_its_events_and_started_comes_first() {
        let pusher = probe(SinkKind::Pusher, 0, Ok(()));
        let hook = probe(SinkKind::Webhook, 0, Ok(()));
        let sse = probe(SinkKind::Sse, 50, Ok(()));
        let sinks = Sinks::new(vec![route(&pusher, 1000), route(&hook, 1000), route(&sse, 1000)]);
        // No webhook URL: the webhook sink is not asked.
        let plain = Delivery::default();
        let started = sinks.announce_started(&record(TaskStatus::Running, plain.clone()));
        sinks.announce(&record(TaskStatus::Succeeded, plain), started).await;
        assert!(hook.got.lock().unwrap().is_empty());
        let order: Vec<TaskStatus> = sse.got.lock().unwrap().iter().map(|(s, _)| *s).collect();
        assert_eq!(order, [TaskStatus::Running, TaskStatus::Succeeded], "the slow sink keeps the order");
        // Only the webhook, and only its final event.
        let only_hook = Delivery {
            sinks: Some(vec![SinkKind::Webhook]),
            webhook: Some("https://h.example/".into()),
            webhook_events_filter: Some(vec![inferpush_protocol::WebhookEvent::Completed]),
        };
        let started = sinks.announce_started(&record(TaskStatus::Running, only_hook.clone()));
        sinks.announce(&record(TaskStatus::Succeeded, only_hook), started).await;
        assert_eq!(
            hook.got.lock().unwrap().iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            [TaskStatus::Succeeded]
        );
        assert_eq!(pusher.got.lock().unwrap().len(), 2, "only the first task's two events");
    }
}
