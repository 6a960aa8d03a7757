//! The task queue on RabbitMQ: publishing with publisher confirms, reconnecting on demand.
//!
//! A task counts as accepted only once the broker has confirmed it is stored; until
//! then the client gets no 202. A lost connection is dropped and re-opened by the
//! next request, so the api heals by itself when RabbitMQ returns.

use std::time::Duration;

use async_trait::async_trait;
use inferpush_protocol::{TaskEnvelope, Topology};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::Mutex;

use super::{QueueError, TaskQueue};

const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

struct Session {
    connection: Connection,
    channel: Channel,
}

/// A confirming publisher on one AMQP connection, opened lazily.
pub struct Broker {
    url: String,
    topology: Topology,
    models: Vec<String>,
    session: Mutex<Option<Session>>,
}

impl Broker {
    /// A broker for `url` that will declare `topology` for `models` on each connect.
    pub fn new(url: String, topology: Topology, models: Vec<String>) -> Self {
        Self { url, topology, models, session: Mutex::new(None) }
    }

    /// The exchange and queue names in use.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn connect(&self) -> Result<Session, QueueError> {
        let unreachable = |e: lapin::Error| QueueError::Unreachable(e.to_string());
        let connection =
            inferpush_service::amqp::connect(&self.url).await.map_err(QueueError::Unreachable)?;
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

    /// Publishes `task` persistently and waits for the broker's confirm.
    async fn publish(&self, task: &TaskEnvelope, traceparent: &str) -> Result<(), QueueError> {
        let channel = self.channel().await?;
        let result = self.publish_on(&channel, task, traceparent).await;
        if let Err(QueueError::Unreachable(_)) = &result {
            self.forget().await;
        }
        result
    }
}

impl Broker {
    async fn publish_on(
        &self,
        channel: &Channel,
        task: &TaskEnvelope,
        traceparent: &str,
    ) -> Result<(), QueueError> {
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString(traceparent.into()));
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(task.task_id.to_string().into())
            .with_timestamp(task.submitted_at_ms / 1000)
            .with_headers(headers);
        let options = BasicPublishOptions { mandatory: true, ..Default::default() };
        let unreachable = |e: lapin::Error| QueueError::Unreachable(e.to_string());
        let confirm = channel
            .basic_publish(
                self.topology.exchange().into(),
                task.model.as_str().into(),
                options,
                &task.to_bytes(),
                properties,
            )
            .await
            .map_err(unreachable)?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| QueueError::Unreachable("no publisher confirm in time".into()))?
            .map_err(unreachable)?;
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
