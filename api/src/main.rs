use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use inferpush_api::broker::Broker;
use inferpush_api::config::ApiConfig;
use inferpush_api::keys::{ApiKeys, DEV_KEYS};
use inferpush_api::{AppState, serve};
use inferpush_protocol::catalogue::MODELS;
use inferpush_store::TaskStore;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let config = ApiConfig::parse();
    tracing::info!(
        listen = %config.listen,
        amqp = config.amqp.redacted_url(),
        redis = config.store.redacted_url(),
        pusher_app = config.pusher.app_id,
        dev_mode = config.dev_mode,
        "starting inferpush-api"
    );

    let keys = ApiKeys::parse(&config.api_keys, config.dev_mode).context("reading INFERPUSH_API_KEYS")?;
    if config.dev_mode {
        let dev: Vec<&str> = DEV_KEYS.iter().map(|(key, _)| *key).collect();
        tracing::warn!(keys = ?dev, "development mode: the dev API keys are accepted");
    }
    if keys.is_empty() {
        tracing::warn!(
            "no API keys configured: every request will get 401; set INFERPUSH_API_KEYS or INFERPUSH_DEV_MODE=true"
        );
    }

    let models = MODELS.iter().map(|m| m.name.to_owned()).collect();
    let broker = Arc::new(Broker::new(config.amqp.url.clone(), config.amqp.topology(), models));
    if !broker.is_ready().await {
        tracing::warn!("RabbitMQ is not reachable yet; submits answer 503 until it is");
    }

    let store =
        TaskStore::new(&config.store.url, &config.store.prefix, Duration::from_secs(config.store.ttl_secs))
            .context("configuring the task store (REDIS_URL)")?;
    if !store.is_ready().await {
        tracing::warn!("Redis is not reachable yet; submits answer 503 until it is");
    }
    let state = AppState {
        broker,
        store,
        keys: Arc::new(keys),
        pusher: Arc::new(config.pusher.credentials()),
        public_url: config.public_url.trim_end_matches('/').to_owned(),
        max_body_bytes: config.max_body_bytes,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    serve(listener, state, shutdown_signal()).await.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutdown signal received, draining requests");
}
