//! The task queue on RabbitMQ: publishing with publisher confirms, reconnecting on demand.
//!
//! A task counts as accepted only once the broker has confirmed it is stored; until
//! then the client gets no 202. A lost connection is dropped and re-opened by the
//! next request, so the api heals by itself when RabbitMQ returns.
//!
//! A failed publish says whether the broker may hold the task: connecting and sending
//! fail before anything left ([`QueueError::Unreachable`]); a confirm that does not come
//! in time, or a connection lost while waiting for it, leaves that unknown
//! ([`QueueError::Unconfirmed`]), and the session is dropped so the next publish starts
//! on a fresh connection.

use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::{Lane, TaskEnvelope, Topology};
use inferpush_service::TrustedCas;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;

use super::{QueueError, TaskQueue};

struct Session {
    connection: Connection,
    channel: Channel,
}

/// A confirming publisher on one AMQP connection, opened lazily.
pub struct Broker {
    url: String,
    topology: Topology,
    models: Vec<String>,
    publish_timeout: Duration,
    trusted: TrustedCas,
    session: Mutex<Option<Session>>,
}

impl Broker {
    /// A broker for `url` that will declare `topology` for `models` on each connect and
    /// gives each publish, connecting included, `publish_timeout` to be confirmed; an
    /// `amqps://` broker's certificate is checked against `trusted`.
    pub fn new(
        url: String,
        topology: Topology,
        models: Vec<String>,
        publish_timeout: Duration,
        trusted: TrustedCas,
    ) -> Self {
        Self { url, topology, models, publish_timeout, trusted, session: Mutex::new(None) }
    }

    /// The exchange and queue names in use.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn connect(&self) -> Result<Session, QueueError> {
        let unreachable = |e: lapin::Error| QueueError::Unreachable(e.to_string());
        let connection = inferpush_service::amqp::connect(&self.url, &self.trusted)
            .await
            .map_err(QueueError::Unreachable)?;
        let channel = connection.create_channel().await.map_err(unreachable)?;
        let models: Vec<&str> = self.models.iter().map(String::as_str).collect();
        inferpush_service::amqp::declare(&self.topology, &channel, &models).await.map_err(unreachable)?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(unreachable)?;
        tracing::info!(exchange = self.topology.exchange(), "connected to RabbitMQ, topology declared");
        Ok(Session { connection, channel })
    }

    /// A channel on a live connection, connecting first if needed.
    async fn channel(&self) -> Result<Channel, QueueError> {
        let mut session = self.session.lock().await;
        if let Some(live) = session.as_ref()
            && live.connection.status().connected()
            && live.channel.status().connected()
        {
            return Ok(live.channel.clone());
        }
        *session = None;
        let fresh = self.connect().await?;
        let channel = fresh.channel.clone();
        *session = Some(fresh);
        Ok(channel)
    }

    async fn forget(&self) {
        *self.session.lock().await = None;
    }
}

#[async_trait]
impl TaskQueue for Broker {
    /// True when a connection is open or can be opened now.
    async fn is_ready(&self) -> bool {
        self.channel().await.is_ok()
    }

    /// Publishes `task` persistently and waits for the broker's confirm, all within the
    /// publish timeout.
    async fn publish(&self, task: &TaskEnvelope, traceparent: &str, lane: Lane) -> Result<(), QueueError> {
        let deadline = tokio::time::Instant::now() + self.publish_timeout;
        let channel = tokio::time::timeout_at(deadline, self.channel())
            .await
            .map_err(|_| QueueError::Unreachable("connecting to RabbitMQ timed out".into()))
            .and_then(|connected| connected);
        let result = match channel {
            Ok(channel) => self.publish_on(&channel, task, traceparent, lane, deadline).await,
            Err(error) => Err(error),
        };
        if let Err(QueueError::Unreachable(_) | QueueError::Unconfirmed(_)) = &result {
            self.forget().await;
        }
        result
    }
}

/// Milliseconds from now to `deadline_ms` (at least 1: 0 would mean "deliver now or drop").
fn time_left_ms(deadline_ms: u64) -> u64 {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    deadline_ms.saturating_sub(now_ms).max(1)
}

impl Broker {
    async fn publish_on(
        &self,
        channel: &Channel,
        task: &TaskEnvelope,
        traceparent: &str,
        lane: Lane,
        deadline: tokio::time::Instant,
    ) -> Result<(), QueueError> {
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString(traceparent.into()));
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(task.task_id.to_string().into())
            .with_timestamp(task.submitted_at_ms / 1000)
            .with_headers(headers);
        if let Some(deadline_ms) = task.deadline_ms {
            // The broker drops (dead-letters) the message once its deadline has passed.
            properties = properties.with_expiration(time_left_ms(deadline_ms).to_string().into());
        }
        let options = BasicPublishOptions { mandatory: true, ..Default::default() };
        let unconfirmed = |e: lapin::Error| QueueError::Unconfirmed(e.to_string());
        let late =
            || QueueError::Unconfirmed(format!("no publisher confirm within {:?}", self.publish_timeout));
        let body = task.to_bytes();
        let sending = channel.basic_publish(
            self.topology.exchange().into(),
            Topology::routing_key(&task.model, lane).as_str().into(),
            options,
            &body,
            properties,
        );
        // Once handed to the connection, the frames may reach the broker even if sending
        // reports an error: every failure from here on leaves the outcome unknown.
        let confirm =
            tokio::time::timeout_at(deadline, sending).await.map_err(|_| late())?.map_err(unconfirmed)?;
        let confirmation =
            tokio::time::timeout_at(deadline, confirm).await.map_err(|_| late())?.map_err(unconfirmed)?;
        if !confirmation.is_ack() {
            // A nack says the broker could not take the message now (a quorum queue
            // electing a new leader, say): passing, so the client is told to retry.
            return Err(QueueError::Unreachable("the broker nacked the message".into()));
        }
        if confirmation.take_message().is_some() {
            return Err(QueueError::Refused(format!("no queue is bound for model `{}`", task.model)));
        }
        Ok(())
    }
}
