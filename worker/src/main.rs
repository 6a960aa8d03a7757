use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use inferpush_protocol::encryption::MasterKey;
use inferpush_store::TaskStore;
use inferpush_worker::config::{WorkerCommand, WorkerConfig};
use inferpush_worker::consumer::{self, ConsumerSettings};
use inferpush_worker::model::Registry;
use inferpush_worker::publisher::{Publisher, SoketiTarget};
use inferpush_worker::task::TaskContext;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let config = WorkerConfig::parse();
    if let Some(WorkerCommand::Embed(args)) = &config.command {
        return inferpush_worker::offline::run(&config.embedding(), args);
    }
    // A device that cannot be had is an error now, not on the first task: the embedding
    // model opens it when it loads; without that model, check it here.
    if !config.models.iter().any(|m| m == inferpush_protocol::catalogue::MINILM) {
        config.device.open().with_context(|| format!("opening --device {}", config.device))?;
    }
    tracing::info!(
        models = ?config.models,
        device = %config.device,
        prefetch = config.prefetch,
        amqp = config.amqp.redacted_url(),
        redis = config.store.redacted_url(),
        soketi = config.pusher.base_url(),
        "starting inferpush-worker"
    );
    let registry =
        Registry::build(&config.models, &config.embedding()).context("building the model registry")?;

    // `stop` ends consuming; `abort` (after the grace period) makes pushes give up so
    // their tasks go back to the queue instead of holding the process.
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let target =
        SoketiTarget { base_url: config.pusher.base_url(), credentials: config.pusher.credentials() };
    let store =
        TaskStore::new(&config.store.url, &config.store.prefix, Duration::from_secs(config.store.ttl_secs))
            .context("configuring the task store (REDIS_URL)")?;
    let context = TaskContext {
        registry,
        publisher: Publisher::spawn(target, config.push_concurrency, abort.clone()),
        store,
        max_event_bytes: config.max_event_bytes,
        result_base_url: config.result_base_url.trim_end_matches('/').to_owned(),
        push_deadline: config.push_deadline,
        abort: abort.clone(),
        master_key: match config.encryption_master_key.as_deref().filter(|k| !k.is_empty()) {
            Some(text) => Some(MasterKey::from_base64(text).context("reading PUSHER_ENCRYPTION_MASTER_KEY")?),
            None => None,
        },
    };
    let settings = ConsumerSettings {
        url: config.amqp.url.clone(),
        topology: config.amqp.topology(),
        prefetch: config.prefetch,
        dead_letters: config.dead_letters,
    };

    let signals = {
        let (stop, abort, grace) = (stop.clone(), abort.clone(), config.shutdown_grace);
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!(grace = ?grace, "shutdown signal received: no new tasks, finishing those in hand");
            stop.cancel();
            tokio::time::sleep(grace).await;
            tracing::warn!("grace period over: giving unfinished tasks back to the queue");
            abort.cancel();
        })
    };
    consumer::run(settings, context, stop).await;
    signals.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
