//! `inferpush-worker`: parses the settings, builds the models, the store and the sinks,
//! consumes until SIGTERM, then drains.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use inferpush_protocol::SinkKind;
use inferpush_protocol::{Clock, SystemClock};
use inferpush_worker::config::{WorkerCommand, WorkerConfig};
use inferpush_worker::delivery::mqtt::{MqttSettings, MqttSink};
use inferpush_worker::delivery::publisher::{CredentialsError, Publisher, PushTarget, verify_credentials};
use inferpush_worker::delivery::pusher::PusherSink;
use inferpush_worker::delivery::sse::EventLogSink;
use inferpush_worker::delivery::webhook::{WebhookSettings, WebhookSink};
use inferpush_worker::delivery::{EventSink, Route, Sinks};
use inferpush_worker::health::Readiness;
use inferpush_worker::model::Registry;
use inferpush_worker::processing::TaskContext;
use inferpush_worker::queue::{self, ConsumerSettings};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = inferpush_service::init_tracing("inferpush-worker");
    inferpush_service::tls::install_crypto_provider();
    inferpush_service::metrics::start();
    inferpush_worker::metrics::describe();
    let config = WorkerConfig::parse();
    match &config.command {
        Some(WorkerCommand::Embed(args)) => return inferpush_worker::offline::embed::run(&config, args),
        Some(WorkerCommand::Generate(args)) => {
            return inferpush_worker::offline::generate::run(&config, args).await;
        }
        None => {}
    }
    let repository = config.check()?;
    if config.check_config {
        inferpush_worker::model::checked_files(&repository, &config.models)?;
        println!("configuration ok");
        return Ok(());
    }
    // A device that cannot be had is an error now, not on the first task (an embedding
    // model opens its own when it loads).
    if let Some(device) = config.device {
        device.open().with_context(|| format!("opening --device {device}"))?;
    }
    tracing::info!(
        models = ?config.models,
        repository = %config.repository.dir().display(),
        device = ?config.device,
        amqp = config.amqp.redacted_url(),
        redis = config.store.redacted_url(),
        soketi = config.pusher.base_url(),
        "starting inferpush-worker"
    );
    let trusted = config.tls.trusted()?;
    let registry = Registry::build(&repository, &config.models, &config.serve())
        .context("building the model registry")?;
    tracing::info!(models = ?registry.names(), "serving");

    // `stop` ends consuming; `abort` (after the grace period) makes pushes give up so
    // their tasks go back to the queue instead of holding the process.
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store =
        config.store.open(clock.clone(), &trusted).context("configuring the task store (REDIS_URL)")?;
    let (sinks, webhooks) = sinks(&config, &store, &clock, &trusted, &abort).await?;
    tracing::info!(sinks = ?sinks.enabled(), "delivering events");
    let presence: Arc<dyn inferpush_store::Presence> = Arc::new(store.presence());
    let served: Vec<String> = registry.names().into_iter().map(str::to_owned).collect();
    let progress: Arc<dyn inferpush_store::ProgressStore> = Arc::new(store.progress());
    let context =
        TaskContext { registry, store: Arc::new(store), sinks, clock, abort: abort.clone(), progress };
    let settings = ConsumerSettings {
        url: config.amqp.url.clone(),
        topology: config.amqp.topology(),
        dead_letter_prefetch: config.dead_letter_prefetch(),
        dead_letters: config.dead_letters,
        trusted,
        webhooks: webhooks.map(|sink| (sink, config.webhook_concurrency.max(1))),
    };

    let signals = {
        let (stop, abort, grace) = (stop.clone(), abort.clone(), config.shutdown_grace);
        tokio::spawn(async move {
            inferpush_service::shutdown_signal().await;
            tracing::info!(grace = ?grace, "shutdown signal received: no new tasks, finishing those in hand");
            stop.cancel();
            tokio::time::sleep(grace).await;
            tracing::warn!("grace period over: giving unfinished tasks back to the queue");
            abort.cancel();
        })
    };
    let readiness = Readiness::default();
    // Not tied to `stop`: the listener keeps answering while the tasks in hand drain.
    inferpush_worker::health::spawn(config.metrics_addr, readiness.clone(), CancellationToken::new())
        .await
        .with_context(|| format!("binding the health listener on {}", config.metrics_addr))?;
    let heartbeat = tokio::spawn(inferpush_worker::heartbeat::run(
        presence,
        inferpush_worker::heartbeat::worker_id(),
        served,
        readiness.clone(),
        stop.clone(),
    ));
    queue::run(settings, context, stop, readiness).await;
    let _ = heartbeat.await;
    signals.abort();
    tracing::info!("stopped");
    Ok(())
}

/// The sinks INFERPUSH_SINKS turns on, each with its deadline, and the webhook sink apart
/// (it also consumes the webhook queue).
async fn sinks(
    config: &WorkerConfig,
    store: &inferpush_store::RedisTaskStore,
    clock: &Arc<dyn Clock>,
    trusted: &inferpush_service::TrustedCas,
    abort: &CancellationToken,
) -> anyhow::Result<(Sinks, Option<Arc<WebhookSink>>)> {
    let mut routes = Vec::new();
    let mut webhooks = None;
    let result_base_url = config.public.base();
    for kind in config.delivery.enabled(config.dev_mode) {
        let (sink, deadline): (Arc<dyn EventSink>, _) = match kind {
            SinkKind::Pusher => {
                (Arc::new(pusher_sink(config, clock, trusted, abort).await?), config.push_deadline)
            }
            SinkKind::Sse => {
                let sink = EventLogSink {
                    log: Arc::new(store.events()),
                    max_event_bytes: config.max_event_bytes,
                    result_base_url: result_base_url.clone(),
                    abort: abort.clone(),
                };
                (Arc::new(sink), config.push_deadline)
            }
            SinkKind::Mqtt => {
                let settings = MqttSettings {
                    url: config.mqtt_url.clone(),
                    username: config.mqtt_username.clone(),
                    password: config.mqtt_password.clone(),
                    topic_prefix: config.delivery.mqtt_topic_prefix.clone(),
                    trusted: trusted.clone(),
                    max_event_bytes: config.max_event_bytes,
                    result_base_url: result_base_url.clone(),
                };
                tracing::info!(broker = settings.redacted_url(), "publishing events over MQTT");
                let sink = MqttSink::start(settings, abort.clone()).map_err(anyhow::Error::msg)?;
                (Arc::new(sink), config.mqtt_deadline)
            }
            SinkKind::Webhook => {
                let settings = WebhookSettings {
                    secret: config
                        .delivery
                        .webhook_secret(config.dev_mode)
                        .map_err(anyhow::Error::msg)?
                        .expect("webhooks are on only with a secret"),
                    targets: config.delivery.webhook_targets().map_err(anyhow::Error::msg)?,
                    max_event_bytes: config.max_event_bytes,
                    result_base_url: result_base_url.clone(),
                    trusted: trusted.clone(),
                    topology: config.amqp.topology(),
                    give_up_after: config.webhook_deadline,
                };
                let sink = Arc::new(WebhookSink::new(settings, abort.clone()).map_err(anyhow::Error::msg)?);
                webhooks = Some(sink.clone());
                // Handing the webhook to its queue is bounded like a push.
                (sink, config.push_deadline)
            }
        };
        routes.push(Route { sink, deadline });
    }
    Ok((Sinks::new(routes), webhooks))
}

/// The Pusher sink, once the server accepted the app's credentials (or could not be asked).
async fn pusher_sink(
    config: &WorkerConfig,
    clock: &Arc<dyn Clock>,
    trusted: &inferpush_service::TrustedCas,
    abort: &CancellationToken,
) -> anyhow::Result<PusherSink> {
    let target = PushTarget {
        base_url: config.pusher.base_url(),
        credentials: config.pusher.credentials(),
        clock: clock.clone(),
        trusted: trusted.clone(),
        max_batch_events: config.pusher.server.max_batch_events(),
    };
    match verify_credentials(&target).await {
        Ok(()) => {
            tracing::info!(
                server = target.base_url,
                kind = ?config.pusher.server,
                "the Pusher server accepted this app's credentials"
            )
        }
        Err(refused @ CredentialsError::Refused { .. }) => return Err(refused.into()),
        Err(error) => {
            tracing::warn!(%error, "could not check the Pusher credentials now; pushes wait for the server")
        }
    }
    Ok(PusherSink {
        publisher: Publisher::spawn(target, config.push_concurrency, abort.clone())
            .map_err(anyhow::Error::msg)
            .context("starting the Pusher client")?,
        max_event_bytes: config.max_event_bytes,
        result_base_url: config.public.base(),
        master_key: config.pusher.master_key().context("reading PUSHER_ENCRYPTION_MASTER_KEY")?,
    })
}
