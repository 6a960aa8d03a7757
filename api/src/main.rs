//! `inferpush-api`: parses the settings, builds the state, serves until SIGTERM.

use anyhow::Context;
use clap::Parser;
use inferpush_api::config::ApiConfig;
use inferpush_api::{AppState, serve};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = inferpush_service::init_tracing("inferpush-api");
    inferpush_service::tls::install_crypto_provider();
    inferpush_service::metrics::start();
    inferpush_api::metrics::describe();
    let config = ApiConfig::parse();
    if config.check_config {
        inferpush_api::state::check_config(&config)?;
        println!("configuration ok");
        return Ok(());
    }
    config.ensure_safe()?;
    tracing::info!(
        listen = %config.listen,
        amqp = config.amqp.redacted_url(),
        redis = config.store.redacted_url(),
        pusher_app = config.pusher.app_id,
        dev_mode = config.dev_mode,
        "starting inferpush-api"
    );
    let state = AppState::from_config(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let metrics = inferpush_service::listen::bind_or_free_port(config.metrics_listen, "metrics listener")
        .await
        .with_context(|| format!("binding {}", config.metrics_listen))?;
    tracing::info!(addr = %metrics.local_addr()?, "metrics listener on /metrics");
    let metrics = tokio::spawn(async move {
        let router = inferpush_api::routes::health::metrics_router();
        if let Err(error) = axum::serve(metrics, router).await {
            tracing::error!(%error, "the metrics listener stopped");
        }
    });
    let shutdown = async {
        inferpush_service::shutdown_signal().await;
        tracing::info!("shutdown signal received, draining requests");
    };
    serve(listener, state, config.server_limits(), shutdown).await.context("serving HTTP")?;
    metrics.abort();
    tracing::info!("stopped");
    Ok(())
}
