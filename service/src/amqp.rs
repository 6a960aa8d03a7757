//! The queue topology declared on a RabbitMQ channel, by the api (before it publishes)
//! and the worker (before it consumes): whichever starts first creates it.

use std::time::Duration;

use inferpush_protocol::{Lane, Topology};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::tls::TrustedCas;

/// How long opening a connection may take before the broker counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Opens a connection to `url` (`amqps://` checked against `trusted`), giving up after
/// [`CONNECT_TIMEOUT`].
pub async fn connect(url: &str, trusted: &TrustedCas) -> Result<Connection, String> {
    let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
    let connecting =
        Connection::connect_with_config(url, ConnectionProperties::default(), trusted.amqp(), runtime);
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| "connecting to RabbitMQ timed out".to_owned())?
        .map_err(|error| format!("connecting to RabbitMQ: {error}"))
}

/// Declares the exchanges and both lanes' queues of `models` (idempotent: declaring what exists
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
        for lane in Lane::ALL {
            let queue = topology.lane_queue(model, lane);
            channel.queue_declare(queue.as_str().into(), queue_options, args.clone()).await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    topology.exchange().into(),
                    Topology::routing_key(model, lane).as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    Ok(())
}

/// Declares the webhook queue and its retry queues, one per delay in `delays_secs`: a
/// message published to a retry queue expires after its delay into the webhook queue
/// (dead-lettered at least once, so a retry is never dropped on the way).
pub async fn declare_webhooks(
    topology: &Topology,
    channel: &Channel,
    delays_secs: &[u64],
) -> lapin::Result<()> {
    let queue_options = QueueDeclareOptions { durable: true, ..Default::default() };
    let main = topology.webhook_queue();
    channel.queue_declare(main.as_str().into(), queue_options, quorum()).await?;
    for delay in delays_secs {
        let mut args = quorum();
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(*delay as i64 * 1000));
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(main.as_str().into()));
        args.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
        args.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
        let queue = topology.webhook_retry_queue(*delay);
        channel.queue_declare(queue.as_str().into(), queue_options, args).await?;
    }
    Ok(())
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    args
}
