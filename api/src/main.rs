use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use inferpush_api::broker::Broker;
use inferpush_api::config::ApiConfig;
use inferpush_api::dev::{DevMode, DevTokens, PusherPublic, demo};
use inferpush_api::jwt::JwtVerifier;
use inferpush_api::keys::{ApiKeys, DEV_KEYS};
use inferpush_api::limits::{Limits, UserLimit};
use inferpush_api::{AppState, serve};
use inferpush_protocol::catalogue::MODELS;
use inferpush_protocol::encryption::MasterKey;
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

    let mut spec = config.api_keys.clone();
    if let Some(path) = &config.api_keys_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let lines = text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty());
        for line in lines {
            spec.push(',');
            spec.push_str(line);
        }
    }
    let keys = ApiKeys::parse(&spec, config.dev_mode).context("reading the API keys")?;
    let rs256_pem = match &config.jwt_rs256_public_key {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
        None => None,
    };
    let jwt = JwtVerifier::from_config(
        config.jwt_hs256_secret.as_deref(),
        rs256_pem.as_deref(),
        config.jwt_issuer.as_deref(),
        config.jwt_audience.as_deref(),
    )
    .context("configuring JWT verification")?;
    let master_key = match config.encryption_master_key.as_deref().filter(|k| !k.is_empty()) {
        Some(text) => {
            Some(Arc::new(MasterKey::from_base64(text).context("reading PUSHER_ENCRYPTION_MASTER_KEY")?))
        }
        None => None,
    };
    let limits = Arc::new(Limits {
        submit: UserLimit::new("submit", config.submit_rate, config.submit_burst),
        auth: UserLimit::new("channel auth", config.auth_rate, config.auth_burst),
    });
    {
        let limits = limits.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                limits.submit.shrink();
                limits.auth.shrink();
            }
        });
    }
    let dev = config.dev_mode.then(|| dev_mode(&config));
    if keys.is_empty() && jwt.is_none() {
        tracing::warn!(
            "no API keys configured: every request will get 401; set INFERPUSH_API_KEYS, a JWT key, or INFERPUSH_DEV_MODE=true"
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
        jwt: jwt.map(Arc::new),
        limits,
        max_in_flight: config.max_in_flight,
        master_key,
        cors_origins: config
            .cors_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect(),
        pusher: Arc::new(config.pusher.credentials()),
        public_url: config.public_url.trim_end_matches('/').to_owned(),
        max_body_bytes: config.max_body_bytes,
        dev: dev.map(Arc::new),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    serve(listener, state, shutdown_signal()).await.context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// Development mode: the dev API keys, demo tokens, and the demo page if it is installed.
fn dev_mode(config: &ApiConfig) -> DevMode {
    let keys: Vec<&str> = DEV_KEYS.iter().map(|(key, _)| *key).collect();
    tracing::warn!(keys = ?keys, "development mode: the dev API keys and demo tokens are accepted");
    let missing: Vec<_> =
        demo::required_files(&config.web_demo_dir).into_iter().filter(|path| !path.is_file()).collect();
    if missing.is_empty() {
        tracing::info!(dir = %config.web_demo_dir.display(), "serving the demo page at /");
    } else {
        tracing::warn!(
            ?missing,
            "the demo page at / is incomplete; run `make deps` from the repository root"
        );
    }
    DevMode {
        tokens: DevTokens::new(Duration::from_secs(config.dev_token_ttl_secs)),
        web_demo_dir: config.web_demo_dir.clone(),
        pusher: PusherPublic {
            key: config.pusher.key.clone(),
            ws_host: config.public_ws_host.clone().unwrap_or_else(|| config.pusher.host.clone()),
            ws_port: config.pusher.port,
            force_tls: config.pusher.scheme == "https",
        },
    }
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
