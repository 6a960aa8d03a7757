//! What every handler may use ([`AppState`]), and how it is built from the settings
//! ([`AppState::from_config`]): the one place that reads key files, configures JWTs,
//! and opens the queue and the store. `main` only wires; tests can build the same state
//! or one with an in-memory store and queue of their own.

use std::sync::Arc;

use anyhow::Context;
use inferpush_protocol::catalogue::Catalogue;
use inferpush_protocol::encryption::MasterKey;
use inferpush_protocol::{AppCredentials, Clock, SystemClock};
use inferpush_repository::FileCheck;
use inferpush_store::{ProgressStore, TaskStore};

use crate::auth::jwt::JwtVerifier;
use crate::auth::keys::{ApiKeys, DEV_KEYS};
use crate::config::ApiConfig;
use crate::delivery::DeliveryState;
use crate::dev::{DevMode, DevTokens, PusherPublic, demo};
use crate::limits::{Limits, UserLimit, UserSlots};
use crate::prompts::Prompts;
use crate::queue::TaskQueue;
use crate::queue::amqp::Broker;
use crate::serving::Serving;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    /// The models of the repository, as inputs are validated against them.
    pub catalogue: Arc<Catalogue>,
    /// The generation models' tokenizers and chat templates, to count prompts.
    pub prompts: Arc<Prompts>,
    /// Which models live workers serve (their heartbeats).
    pub serving: Arc<Serving>,
    /// Where accepted tasks go.
    pub queue: Arc<dyn TaskQueue>,
    /// Task state and results.
    pub store: Arc<dyn TaskStore>,
    /// Running generations' text so far, and stop requests.
    pub progress: Arc<dyn ProgressStore>,
    /// The time, for stamping tasks.
    pub clock: Arc<dyn Clock>,
    /// Known API keys.
    pub keys: Arc<ApiKeys>,
    /// JWT verification, when configured.
    pub jwt: Option<Arc<JwtVerifier>>,
    /// Per-user rate limits.
    pub limits: Arc<Limits>,
    /// Most unfinished tasks one user may have.
    pub max_in_flight: u64,
    /// Unfinished tasks a user may have before new ones take the bulk lane.
    pub fair_share: u64,
    /// Most result bytes one user may hold over one result TTL (0: no quota).
    pub result_quota_bytes: u64,
    /// Key for end-to-end encrypted channels, when configured.
    pub master_key: Option<Arc<MasterKey>>,
    /// Origins allowed to call the api from a browser (CORS).
    pub cors_origins: Vec<String>,
    /// The Pusher app whose secret signs subscriptions.
    pub pusher: Arc<AppCredentials>,
    /// Prefix for absolute URLs in responses (may be empty).
    pub public_url: String,
    /// How long a submit waits for the broker's confirm.
    pub publish_timeout: std::time::Duration,
    /// Request body limit, for error messages.
    pub max_body_bytes: usize,
    /// Development mode (demo tokens and page), when on.
    pub dev: Option<Arc<DevMode>>,
    /// The sinks, webhook targets and event logs.
    pub delivery: Arc<DeliveryState>,
    /// The longest `Prefer: wait` honoured.
    pub max_wait: std::time::Duration,
    /// How old an unsettled publish must be before a sweep takes it over.
    pub unsettled_grace: std::time::Duration,
}

impl AppState {
    /// The state `config` describes, on RabbitMQ and Redis. Neither has to be up: the
    /// api starts anyway and answers 503 until they are.
    pub async fn from_config(config: &ApiConfig) -> anyhow::Result<Self> {
        let keys = api_keys(config)?;
        let jwt = jwt_verifier(config)?;
        let master_key = config.pusher.master_key().context("reading PUSHER_ENCRYPTION_MASTER_KEY")?;
        if keys.is_empty() && jwt.is_none() {
            tracing::warn!(
                "no API keys configured: every request will get 401; set INFERPUSH_API_KEYS, a JWT key, or INFERPUSH_DEV_MODE=true"
            );
        }
        let trusted = config.tls.trusted()?;
        let (catalogue, prompts) = catalogue(config)?;
        let models = catalogue.names().into_iter().map(str::to_owned).collect();
        let queue = Broker::new(
            config.amqp.url.clone(),
            config.amqp.topology(),
            models,
            config.publish_timeout(),
            trusted.clone(),
        );
        if !queue.is_ready().await {
            tracing::warn!("RabbitMQ is not reachable yet; submits answer 503 until it is");
        }
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store =
            config.store.open(clock.clone(), &trusted).context("configuring the task store (REDIS_URL)")?;
        if !store.is_ready().await {
            tracing::warn!("Redis is not reachable yet; submits answer 503 until it is");
        }
        tokio::spawn(migrate_layout(store.clone()));
        let serving = Arc::new(Serving::new(Arc::new(store.presence())));
        serving.keep_fresh();
        let delivery = DeliveryState::new(
            config.delivery.enabled(config.dev_mode),
            config.delivery.webhook_targets().map_err(anyhow::Error::msg)?,
            config.delivery.mqtt_topic_prefix.clone(),
            Arc::new(store.events()),
            config.max_streams_per_user,
        );
        tracing::info!(sinks = ?delivery.enabled, "delivering events");
        Ok(Self {
            catalogue: Arc::new(catalogue),
            prompts: Arc::new(prompts),
            progress: Arc::new(store.progress()),
            serving,
            delivery: Arc::new(delivery),
            max_wait: config.max_wait(),
            unsettled_grace: config.unsettled_grace,
            queue: Arc::new(queue),
            store: Arc::new(store),
            clock,
            keys: Arc::new(keys),
            jwt: jwt.map(Arc::new),
            limits: Arc::new(Limits {
                submit: UserLimit::new("submit", config.submit_rate, config.submit_burst),
                auth: UserLimit::new("channel auth", config.auth_rate, config.auth_burst),
                list: UserLimit::new("task listing", config.list_rate, config.list_burst),
                waits: UserSlots::new(config.max_waits_per_user),
            }),
            max_in_flight: config.max_in_flight,
            fair_share: config.fair_share,
            result_quota_bytes: config.result_quota_bytes,
            master_key: master_key.map(Arc::new),
            cors_origins: config
                .cors_origins
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            pusher: Arc::new(config.pusher.credentials()),
            public_url: config.public.base(),
            publish_timeout: config.publish_timeout(),
            max_body_bytes: config.max_body_bytes,
            dev: config.dev_mode.then(|| Arc::new(dev_mode(config))),
        })
    }
}

/// Reads and checks every file and value the state would be built from (keys, JWT key,
/// master key, trusted CAs), without opening RabbitMQ or Redis: `--check-config`.
pub fn check_config(config: &ApiConfig) -> anyhow::Result<()> {
    config.ensure_safe()?;
    catalogue(config)?;
    api_keys(config)?;
    jwt_verifier(config)?;
    config.pusher.master_key().context("reading PUSHER_ENCRYPTION_MASTER_KEY")?;
    config.tls.trusted()?;
    config.delivery.check(config.dev_mode)?;
    Ok(())
}

/// The catalogue of the model repository's cards (the api checks the cards, never the
/// weights: it loads none), and the generation models' prompt counters.
fn catalogue(config: &ApiConfig) -> anyhow::Result<(Catalogue, Prompts)> {
    let repository = config.repository.load(FileCheck::None)?;
    anyhow::ensure!(
        !repository.models().is_empty(),
        "the model repository {} holds no model (no folder with a model.toml)",
        config.repository.dir().display()
    );
    tracing::info!(models = ?repository.names(), repository = %config.repository.dir().display(), "model repository read");
    let prompts = Prompts::load(&repository)?;
    Ok((Catalogue::new(&repository), prompts))
}

/// The configured keys: the inline list, then the key file's lines.
fn api_keys(config: &ApiConfig) -> anyhow::Result<ApiKeys> {
    let mut spec = config.api_keys.clone();
    if let Some(path) = &config.api_keys_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let lines = text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty());
        for line in lines {
            spec.push(',');
            spec.push_str(line);
        }
    }
    ApiKeys::parse(&spec, config.dev_mode).context("reading the API keys")
}

fn jwt_verifier(config: &ApiConfig) -> anyhow::Result<Option<JwtVerifier>> {
    let rs256_pem = match &config.jwt_rs256_public_key {
        Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
        None => None,
    };
    JwtVerifier::from_config(
        config.jwt_hs256_secret.as_deref(),
        rs256_pem.as_deref(),
        config.jwt_issuer.as_deref(),
        config.jwt_audience.as_deref(),
    )
    .context("configuring JWT verification")
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
        tokens: match config.dev_token_secret.as_deref().filter(|s| !s.is_empty()) {
            Some(secret) => DevTokens::with_secret(secret, config.dev_token_ttl),
            None => DevTokens::new(config.dev_token_ttl),
        },
        web_demo_dir: config.web_demo_dir.clone(),
        pusher: PusherPublic {
            key: config.pusher.key.clone(),
            ws_host: config.public_ws_host.clone().unwrap_or_else(|| config.pusher.host.clone()),
            ws_port: config.pusher.port,
            force_tls: config.pusher.scheme == "https",
        },
    }
}

/// Moves what an earlier version stored under the flat key names to this version's, once
/// (the first api to start after an upgrade does it; the others find it done), retrying
/// while Redis is away.
async fn migrate_layout(store: inferpush_store::RedisTaskStore) {
    let mut wait = std::time::Duration::from_millis(500);
    loop {
        match store.migrate_layout().await {
            Ok(Some(migrated)) if migrated.moved + migrated.left > 0 => {
                tracing::info!(
                    moved = migrated.moved,
                    left = migrated.left,
                    "moved Redis keys to the hash-tagged layout"
                );
                return;
            }
            Ok(_) => return,
            Err(error) => tracing::debug!(%error, "the Redis key layout's check waits for Redis"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(30));
    }
}
