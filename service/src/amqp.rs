//! The queue topology declared on a RabbitMQ channel, by the api (before it publishes)
//! and the worker (before it consumes): whichever starts first creates it.

use std::time::Duration;

use inferpush_protocol::Topology;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

/// How long opening a connection may take before the broker counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens a connection to `url`, giving up after [`CONNECT_TIMEOUT`].
pub async fn connect(url: &str) -> Result<Connection, String> {
    tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, ConnectionProperties::default()))
        .await
        .map_err(|_| "connecting to RabbitMQ timed out".to_owned())?
        .map_err(|error| format!("connecting to RabbitMQ: {error}"))
}

/// Declares the exchanges and the queues of `models` (idempotent: declaring what exists
/// with the same arguments is a no-op, so api and worker both do it at start).
pub async fn declare(topology: &Topology, channel: &Channel, models: &[&str]) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    let queue_options = QueueDeclareOptions { durable: true, ..Default::default() };
    channel
        .exchange_declare(topology.exchange().into(), ExchangeKind::Direct, durable, FieldTable::default())
        .await?;
    channel
        .exchange_declare(
            topology.dead_letter_exchange().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel.queue_declare(topology.dead_letter_queue().into(), queue_options, quorum()).await?;
    channel
        .queue_bind(
            topology.dead_letter_queue().into(),
            topology.dead_letter_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    for model in models {
        let mut args = quorum();
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(topology.delivery_limit as i32));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(topology.dead_letter_exchange().into()),
        );
        channel.queue_declare(topology.queue(model).into(), queue_options, args).await?;
        channel
            .queue_bind(
                topology.queue(model).into(),
                topology.exchange().into(),
                (*model).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    args
}
