//! Queue handling: consumes the served models' queues, both lanes of each (and the dead
//! letters, and the webhook queue), on RabbitMQ with prefetch, manual acks, graceful stop
//! and reconnects; each message goes to [`message`] (a webhook to its sink). Every queue has its own channel and so its own prefetch:
//! the bulk lane's backlog never takes the slots of the main lane's tasks.
//!
//! The loop has three states: connecting, consuming, draining. A broken connection
//! is logged and retried after a delay; it never kills the process. On stop, the
//! consumers are cancelled, the tasks in hand finish and are acked, and whatever was
//! prefetched but not started goes back to the queue when the channel closes.

mod message;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use inferpush_protocol::{Lane, Topology};
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::delivery::webhook::WebhookSink;
use crate::delivery::webhook_queue::RETRY_DELAYS_SECS;
use crate::health::Readiness;
use crate::processing::TaskContext;
use message::{handle, handle_dead_letter};

const RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Where and how much to consume.
#[derive(Clone)]
pub struct ConsumerSettings {
    /// RabbitMQ URL.
    pub url: String,
    /// Exchange and queue names.
    pub topology: Topology,
    /// Unacked dead letters at once (each model's queues take its own prefetch).
    pub dead_letter_prefetch: u16,
    /// Also consume the dead-letter queue.
    pub dead_letters: bool,
    /// Authorities an `amqps://` broker's certificate may chain to.
    pub trusted: inferpush_service::TrustedCas,
    /// Also consume the webhook queue with this sink, so many at once.
    pub webhooks: Option<(Arc<WebhookSink>, u16)>,
}

/// Which queue a delivery came from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Model(Lane),
    DeadLetters,
    Webhooks,
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
    if let Some((sink, _)) = &settings.webhooks {
        inferpush_service::amqp::declare_webhooks(&settings.topology, &setup, &RETRY_DELAYS_SECS)
            .await
            .context("declaring the webhook queues")?;
        let publishing = connection.create_channel().await?;
        publishing.confirm_select(ConfirmSelectOptions::default()).await?;
        sink.queue.attach(Some(publishing));
    }

    let mut consumers = Vec::new();
    let mut deliveries: SelectAll<BoxStream<'static, (Source, lapin::Result<Delivery>)>> = SelectAll::new();
    let mut queues: Vec<(Source, String, u16)> = models
        .iter()
        .flat_map(|m| {
            let prefetch = context.registry.prefetch(m);
            Lane::ALL.map(|lane| (Source::Model(lane), settings.topology.lane_queue(m, lane), prefetch))
        })
        .collect();
    if settings.dead_letters {
        queues.push((
            Source::DeadLetters,
            settings.topology.dead_letter_queue(),
            settings.dead_letter_prefetch,
        ));
    }
    if let Some((_, concurrency)) = &settings.webhooks {
        queues.push((Source::Webhooks, settings.topology.webhook_queue(), *concurrency));
    }
    for (source, queue, prefetch) in queues {
        let channel = connection.create_channel().await?;
        channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
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
        tracing::info!(queue, prefetch, "consuming");
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
                Some((Source::Webhooks, Ok(delivery))) => {
                    if let Some((sink, _)) = &settings.webhooks {
                        let sink = sink.clone();
                        tasks.spawn(async move { sink.handle(delivery).await });
                    }
                }
                Some((_, Err(error))) => break Err(anyhow::Error::new(error).context("consuming")),
                None => break Err(anyhow::anyhow!("the broker cancelled our consumers")),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    if let Some((sink, _)) = &settings.webhooks {
        sink.queue.attach(None);
    }
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
