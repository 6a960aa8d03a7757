//! Delivery through a Pusher-protocol server (Soketi): the record becomes one
//! `inference.*` event on the owner's channel, sealed for an encrypted channel, with an
//! output too large for one event replaced by its `result_url`; the [`Publisher`] sends it.

use async_trait::async_trait;
use inferpush_protocol::encryption::MasterKey;
use inferpush_protocol::event::BatchEvent;
use inferpush_protocol::{DeltaEvent, EventName, SinkKind, TaskRecord};

use super::event::{render, result_event};
use super::publisher::Publisher;
use super::{EventSink, PushError};

/// Soketi's default event size limit (`maxEventPayloadInKb` = 100).
pub const SOKETI_MAX_EVENT_BYTES: usize = 100 * 1024;

/// Pushes events to the owner's Pusher channel.
pub struct PusherSink {
    /// The signed REST client.
    pub publisher: Publisher,
    /// Largest event data pushed inline; larger results go out as `result_url`.
    pub max_event_bytes: usize,
    /// Prefix of `result_url` (the api's public URL; empty for a relative URL).
    pub result_base_url: String,
    /// Key for `private-encrypted-` channels, when configured.
    pub master_key: Option<MasterKey>,
}

impl PusherSink {
    /// The key to seal `record`'s events with: none for a channel in clear; refused for an
    /// encrypted channel without a master key.
    fn seal(&self, record: &TaskRecord) -> Result<Option<&MasterKey>, PushError> {
        match (record.channel.is_encrypted(), &self.master_key) {
            (false, _) => Ok(None),
            (true, Some(key)) => Ok(Some(key)),
            (true, None) => Err(PushError::Rejected(
                "no PUSHER_ENCRYPTION_MASTER_KEY: not pushing to an encrypted channel in clear".into(),
            )),
        }
    }
}

#[async_trait]
impl EventSink for PusherSink {
    fn kind(&self) -> SinkKind {
        SinkKind::Pusher
    }

    async fn deliver(&self, record: &TaskRecord) -> Result<(), PushError> {
        let seal = self.seal(record)?;
        let (event, data) = result_event(record, self.max_event_bytes, &self.result_base_url, seal);
        let Some(name) = event.event_name() else {
            return Ok(());
        };
        self.publisher.push(BatchEvent { channel: record.channel.to_string(), name: name.into(), data }).await
    }

    async fn deliver_delta(&self, record: &TaskRecord, delta: &DeltaEvent) -> Result<(), PushError> {
        let seal = self.seal(record)?;
        let channel = record.channel.to_string();
        let data = render(delta, &channel, seal);
        self.publisher.push(BatchEvent { channel, name: EventName::DELTA.into(), data }).await
    }
}
