//! Queue handling: consumes the served models' queues, both lanes of each (and the dead
//! letters), on RabbitMQ with prefetch, manual acks, graceful stop and reconnects; each
//! message goes to [`message`]. Every queue has its own channel and so its own prefetch:
//! the bulk lane's backlog never takes the slots of the main lane's tasks.
//!
//! The loop has three states: connecting, consuming, draining. A broken connection
//! is logged and retried after a delay; it never kills the process. On stop, the
//! consumers are cancelled, the tasks in hand finish and are acked, and whatever was
//! prefetched but not started goes back to the queue when the channel closes.

mod message;

use std::time::Duration;

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use inferpush_protocol::{Lane, Topology};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::health::Readiness;
use crate::processing::TaskContext;
use message::{handle, handle_dead_letter};

const RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Where and how much to consume.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// RabbitMQ URL.
    pub url: String,
    /// Exchange and queue names.
    pub topology: Topology,
    /// Unacked deliveries per queue (each model has two, one per lane).
    pub prefetch: u16,
    /// Also consume the dead-letter queue.
    pub dead_letters: bool,
    /// Authorities an `amqps://` broker's certificate may chain to.
    pub trusted: inferpush_service::TrustedCas,
}

/// Which queue a delivery came from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Model(Lane),
    DeadLetters,
}

/// Consumes until `stop` fires, reconnecting as often as needed; `readiness` says
/// whether the consumers are in place.
pub async fn run(
    settings: ConsumerSettings,
    context: TaskContext,
    stop: CancellationToken,
    readiness: Readiness,
) {
    loop {
        let session = consume(&settings, &context, &stop, &readiness).await;
        readiness.set(false);
        match session {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "RabbitMQ session ended; reconnecting");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(RECONNECT_DELAY) => {}
                }
            }
        }
    }
}

struct ModelConsumer {
    channel: Channel,
    tag: String,
}

async fn consume(
    settings: &ConsumerSettings,
    context: &TaskContext,
    stop: &CancellationToken,
    readiness: &Readiness,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let connection = inferpush_service::amqp::connect(&settings.url, &settings.trusted)
        .await
        .map_err(anyhow::Error::msg)?;
    let models = context.registry.names();
    let setup = connection.create_channel().await?;
    inferpush_service::amqp::declare(&settings.topology, &setup, &models)
        .await
        .context("declaring the topology")?;

    let mut consumers = Vec::new();
    let mut deliveries: SelectAll<BoxStream<'static, (Source, lapin::Result<Delivery>)>> = SelectAll::new();
    let mut queues: Vec<(Source, String)> = models
        .iter()
        .flat_map(|m| Lane::ALL.map(|lane| (Source::Model(lane), settings.topology.lane_queue(m, lane))))
        .collect();
    if settings.dead_letters {
        queues.push((Source::DeadLetters, settings.topology.dead_letter_queue()));
    }
    for (source, queue) in queues {
        let channel = connection.create_channel().await?;
        channel.basic_qos(settings.prefetch, BasicQosOptions::default()).await?;
        let tag = format!("inferpush-worker-{}-{queue}", std::process::id());
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming {queue}"))?;
        tracing::info!(queue, prefetch = settings.prefetch, "consuming");
        deliveries.push(consumer.map(move |delivery| (source, delivery)).boxed());
        consumers.push(ModelConsumer { channel, tag });
    }

    readiness.set(true);
    let mut tasks = JoinSet::new();
    let ended = loop {
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            next = deliveries.next() => match next {
                Some((Source::Model(lane), Ok(delivery))) => {
                    tasks.spawn(handle(delivery, lane, context.clone()));
                }
                Some((Source::DeadLetters, Ok(delivery))) => {
                    tasks.spawn(handle_dead_letter(delivery, context.clone()));
                }
                Some((_, Err(error))) => break Err(anyhow::Error::new(error).context("consuming")),
                None => break Err(anyhow::anyhow!("the broker cancelled our consumers")),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    if ended.is_err() {
        // The channel is gone: the tasks in hand can no longer be acked and will be
        // redelivered, so stop working on them.
        tasks.shutdown().await;
        return ended;
    }

    readiness.set(false);
    tracing::info!(in_hand = tasks.len(), "stopping: finishing the tasks in hand");
    for consumer in &consumers {
        let _ =
            consumer.channel.basic_cancel(consumer.tag.as_str().into(), BasicCancelOptions::default()).await;
    }
    while tasks.join_next().await.is_some() {}
    let _ = connection.close(200, "worker stopping".into()).await;
    tracing::info!("all tasks in hand settled");
    Ok(())
}
