//! Delivery to the users' event logs, which the api serves as server-sent events: each
//! event is logged once (a repeat after a redelivery is the same entry) and published on
//! Redis Pub/Sub for every api replica. A Redis outage holds the event, retrying, until
//! Redis answers, the deadline passes or the worker stops.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::{DeltaEvent, EventName, SinkKind, TaskRecord};
use inferpush_store::{EventLog, StoreError};
use tokio_util::sync::CancellationToken;

use super::event::result_event;
use super::{EventSink, PushError};

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(3);

/// Logs events for the api's `/v1/events` streams.
pub struct EventLogSink {
    /// The users' logs.
    pub log: Arc<dyn EventLog>,
    /// Largest event data logged inline; larger results go out as `result_url`.
    pub max_event_bytes: usize,
    /// Prefix of `result_url`.
    pub result_base_url: String,
    /// Fires when the worker stops waiting.
    pub abort: CancellationToken,
}

#[async_trait]
impl EventSink for EventLogSink {
    fn kind(&self) -> SinkKind {
        SinkKind::Sse
    }

    async fn deliver(&self, record: &TaskRecord) -> Result<(), PushError> {
        let (event, data) = result_event(record, self.max_event_bytes, &self.result_base_url, None);
        let Some(name) = event.event_name() else {
            return Ok(());
        };
        self.log(record, name, name, &data).await
    }

    async fn deliver_delta(&self, record: &TaskRecord, delta: &DeltaEvent) -> Result<(), PushError> {
        let data = serde_json::to_string(delta).expect("events always serialise");
        let once = format!("{}:{}:{}", EventName::DELTA, delta.attempt, delta.seq);
        self.log(record, EventName::DELTA, &once, &data).await
    }
}

impl EventLogSink {
    /// Logs `data` as `name` once (`once` tells repeats apart), retrying while Redis is away.
    async fn log(&self, record: &TaskRecord, name: &str, once: &str, data: &str) -> Result<(), PushError> {
        let mut wait = FIRST_RETRY;
        loop {
            match self.log.append_once(&record.user_id, record.task_id, name, once, data).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Corrupt(error)) => return Err(PushError::Rejected(error.to_string())),
                Err(StoreError::Unavailable(error)) => {
                    tracing::warn!(%error, task_id = %record.task_id, "event log unavailable; retrying");
                    tokio::select! {
                        _ = self.abort.cancelled() => return Err(PushError::Aborted),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(LONGEST_RETRY);
                }
            }
        }
    }
}
