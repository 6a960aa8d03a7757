//! The settings both the api and the worker take, each declared once: the Pusher app
//! (under Laravel's variable names), the broker, the task store and the api's public URL.
//!
//! Every duration is written the same way: a number with a unit (`250ms`, `30s`, `15m`,
//! `24h`), a bare number meaning seconds.

use std::sync::Arc;
use std::time::Duration;

use inferpush_protocol::encryption::{EncryptionError, MasterKey};
use inferpush_protocol::topology::DEFAULT_DELIVERY_LIMIT;
use inferpush_protocol::webhook::WebhookSecret;
use inferpush_protocol::{AppCredentials, Clock, SinkKind, Topology, WebhookTargets};
use inferpush_store::{Durability, RedisTarget, RedisTaskStore, StoreError};

use crate::tls::TrustedCas;

/// The Pusher app, under Laravel's variable names.
#[derive(Debug, Clone, clap::Args)]
pub struct PusherArgs {
    /// Pusher app id (of Soketi, Sockudo or any Pusher-protocol server).
    #[arg(long = "pusher-app-id", env = "PUSHER_APP_ID", default_value = "app-id")]
    pub app_id: String,
    /// Pusher app key, public: clients connect with it.
    #[arg(long = "pusher-app-key", env = "PUSHER_APP_KEY", default_value = "app-key")]
    pub key: String,
    /// Pusher app secret, used to sign subscriptions and REST calls.
    #[arg(
        long = "pusher-app-secret",
        env = "PUSHER_APP_SECRET",
        default_value = "app-secret",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub secret: String,
    /// Host of the push server's HTTP API and WebSocket server.
    #[arg(long = "pusher-host", env = "PUSHER_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the push server's HTTP API and WebSocket server.
    #[arg(long = "pusher-port", env = "PUSHER_PORT", default_value_t = 6001)]
    pub port: u16,
    /// `http` or `https`.
    #[arg(long = "pusher-scheme", env = "PUSHER_SCHEME", default_value = "http", value_parser = ["http", "https"])]
    pub scheme: String,
    /// Base64 of 32 bytes: enables end-to-end encrypted `private-encrypted-inference.{user}`
    /// channels (the api hands out their keys, the worker seals results for them).
    #[arg(long = "encryption-master-key", env = "PUSHER_ENCRYPTION_MASTER_KEY", hide_env_values = true)]
    pub encryption_master_key: Option<String>,
    /// Which Pusher-protocol server answers at PUSHER_HOST: it sets how many events one
    /// `batch_events` call may carry.
    #[arg(long = "push-server", env = "INFERPUSH_PUSH_SERVER", value_enum, default_value_t = PushServer::Soketi)]
    pub server: PushServer,
}

/// The Pusher-protocol servers inferpush is tested with. Both take the same app, the same
/// signed REST calls and the same clients; they differ in limits and in how they answer
/// errors (see the README's client section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PushServer {
    /// Soketi 1.6: REST errors as `200 {"error", "code"}`; up to 10 events per batch.
    Soketi,
    /// Sockudo 5: REST errors as real 4xx statuses; up to 100 events per batch.
    Sockudo,
}

impl PushServer {
    /// Events one `batch_events` call may carry: the server's default limit (Soketi's
    /// `maxBatchSize` 10, Sockudo's `max_event_batch_size` 100).
    pub const fn max_batch_events(self) -> usize {
        match self {
            PushServer::Soketi => 10,
            PushServer::Sockudo => 100,
        }
    }
}

/// The default app of Soketi and of Sockudo alike (`app-id`, `app-key`, `app-secret`):
/// every copy of either and every tutorial knows it, so only development mode accepts it.
pub const WELL_KNOWN_DEFAULT_APP: (&str, &str, &str) = ("app-id", "app-key", "app-secret");

/// The shortest app secret accepted outside development mode.
pub const MIN_APP_SECRET_LEN: usize = 16;

/// A setting that would make a deployment unsafe; the message names the variable and
/// never shows a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnsafeSetting(pub String);

impl PusherArgs {
    /// Outside development mode: refuses the push servers' well-known default app and a
    /// secret too short to be one.
    pub fn ensure_own_app(&self) -> Result<(), UnsafeSetting> {
        let (default_id, default_key, default_secret) = WELL_KNOWN_DEFAULT_APP;
        if self.secret == default_secret {
            return Err(UnsafeSetting(format!(
                "PUSHER_APP_SECRET is Soketi's and Sockudo's well-known default; set the app's own secret \
                 (at least {MIN_APP_SECRET_LEN} characters), or INFERPUSH_DEV_MODE=true on a development machine"
            )));
        }
        if self.secret.chars().count() < MIN_APP_SECRET_LEN {
            return Err(UnsafeSetting(format!(
                "PUSHER_APP_SECRET is too short to be a secret: use at least {MIN_APP_SECRET_LEN} random characters"
            )));
        }
        if self.key == default_key || self.app_id == default_id {
            let variable = if self.key == default_key { "PUSHER_APP_KEY" } else { "PUSHER_APP_ID" };
            return Err(UnsafeSetting(format!(
                "{variable} is Soketi's and Sockudo's well-known default; give the app its own id and key, \
                 or set INFERPUSH_DEV_MODE=true on a development machine"
            )));
        }
        Ok(())
    }

    /// The app id, key and secret.
    pub fn credentials(&self) -> AppCredentials {
        AppCredentials::new(&self.app_id, &self.key, &self.secret)
    }

    /// Base URL of the Pusher HTTP API, e.g. `http://127.0.0.1:6001`.
    pub fn base_url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }

    /// The encryption master key, when one is set (an empty value counts as none).
    pub fn master_key(&self) -> Result<Option<MasterKey>, EncryptionError> {
        self.encryption_master_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(MasterKey::from_base64)
            .transpose()
    }
}

/// The broker connection and the names on it.
#[derive(Debug, Clone, clap::Args)]
pub struct AmqpArgs {
    /// RabbitMQ URL.
    #[arg(
        id = "amqp_url",
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_default_value = true,
        hide_env_values = true
    )]
    pub url: String,
    /// Prefix of every exchange and queue name, so deployments can share a broker.
    #[arg(
        id = "amqp_prefix",
        long = "amqp-prefix",
        env = "INFERPUSH_AMQP_PREFIX",
        default_value = "inferpush"
    )]
    pub prefix: String,
    /// Deliveries of one task before it is dead-lettered.
    #[arg(long = "delivery-limit", env = "INFERPUSH_DELIVERY_LIMIT", default_value_t = DEFAULT_DELIVERY_LIMIT)]
    pub delivery_limit: u32,
}

impl AmqpArgs {
    /// The topology these settings name.
    pub fn topology(&self) -> Topology {
        let mut topology = Topology::new(&self.prefix);
        topology.delivery_limit = self.delivery_limit;
        topology
    }

    /// The URL with any password replaced, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url_password(&self.url)
    }
}

/// Where task state lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Redis URL for task state and results.
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub url: String,
    /// Prefix of every Redis key, so deployments can share a server.
    #[arg(
        id = "redis_prefix",
        long = "redis-prefix",
        env = "INFERPUSH_REDIS_PREFIX",
        default_value = "inferpush"
    )]
    pub prefix: String,
    /// How long task state and results are kept.
    #[arg(long = "result-ttl", env = "INFERPUSH_RESULT_TTL", default_value = "24h", value_parser = parse_duration)]
    pub ttl: Duration,
    /// Deprecated spelling of `--result-ttl` in seconds; read when `INFERPUSH_RESULT_TTL` is not set.
    #[arg(long = "result-ttl-secs", env = "INFERPUSH_RESULT_TTL_SECS", hide = true, conflicts_with = "ttl")]
    pub legacy_ttl_secs: Option<u64>,
    /// Redis Sentinels (`host:port,host:port,…`) that name the master to use, followed
    /// across a failover; `REDIS_URL` then gives only the user, password, database and TLS.
    #[arg(long = "redis-sentinels", env = "INFERPUSH_REDIS_SENTINELS", value_delimiter = ',')]
    pub sentinels: Vec<String>,
    /// The master's name at the Sentinels (needed with `INFERPUSH_REDIS_SENTINELS`).
    #[arg(long = "redis-master", env = "INFERPUSH_REDIS_MASTER")]
    pub master: Option<String>,
    /// Nodes of a Redis Cluster (`host:port,…`, any of them): the store shards by user.
    #[arg(
        long = "redis-cluster-nodes",
        env = "INFERPUSH_REDIS_CLUSTER_NODES",
        value_delimiter = ',',
        conflicts_with = "sentinels"
    )]
    pub cluster_nodes: Vec<String>,
    /// Redis's password, when not in `REDIS_URL`'s user info.
    #[arg(long = "redis-password", env = "INFERPUSH_REDIS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The Sentinels' own password, when they ask for one (`requirepass` in their configuration).
    #[arg(
        long = "redis-sentinel-password",
        env = "INFERPUSH_REDIS_SENTINEL_PASSWORD",
        hide_env_values = true
    )]
    pub sentinel_password: Option<String>,
    /// Replicas that must hold an accepted task and a stored result before either is
    /// acknowledged (Redis `WAIT`) [default: 1 with Sentinels, else 0].
    #[arg(long = "redis-wait-replicas", env = "INFERPUSH_REDIS_WAIT_REPLICAS")]
    pub wait_replicas: Option<u32>,
    /// The longest such wait; past it the write stands, acknowledged by fewer replicas (logged).
    #[arg(
        long = "redis-wait-timeout",
        env = "INFERPUSH_REDIS_WAIT_TIMEOUT",
        default_value = "250ms",
        value_parser = parse_duration
    )]
    pub wait_timeout: Duration,
}

impl StoreArgs {
    /// How long records live (the deprecated seconds setting still counts when given).
    pub fn ttl(&self) -> Duration {
        self.legacy_ttl_secs.map(Duration::from_secs).unwrap_or(self.ttl)
    }

    /// The Redis task store these settings name (`rediss://` checked against `trusted`);
    /// connects lazily, so this never blocks.
    pub fn open(&self, clock: Arc<dyn Clock>, trusted: &TrustedCas) -> Result<RedisTaskStore, StoreError> {
        RedisTaskStore::open(&self.target(trusted)?, &self.prefix, self.ttl(), clock)
    }

    /// Where Redis is: one server, a master behind Sentinels, or a cluster.
    pub fn target(&self, trusted: &TrustedCas) -> Result<RedisTarget, StoreError> {
        let listed = |list: &[String]| -> Vec<String> {
            list.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
        };
        let sentinels = listed(&self.sentinels);
        let master = self.master.clone().unwrap_or_default();
        if !sentinels.is_empty() && master.is_empty() {
            return Err(StoreError::Unavailable(
                "INFERPUSH_REDIS_SENTINELS is set but INFERPUSH_REDIS_MASTER (the master's name) is not"
                    .into(),
            ));
        }
        let replicas = self.wait_replicas.unwrap_or(u32::from(!sentinels.is_empty()));
        Ok(RedisTarget {
            url: self.url.clone(),
            sentinels,
            master,
            cluster_nodes: listed(&self.cluster_nodes),
            password: self.password.clone().filter(|p| !p.is_empty()),
            sentinel_password: self.sentinel_password.clone().filter(|p| !p.is_empty()),
            ca_pem: trusted.pem().map(str::to_owned),
            durability: Durability { replicas, timeout: self.wait_timeout },
        })
    }

    /// Where Redis is, any password replaced, for logs.
    pub fn redacted_url(&self) -> String {
        let url = redact_url_password(&self.url);
        if !self.cluster_nodes.is_empty() {
            format!("cluster {} ({url})", self.cluster_nodes.join(","))
        } else if !self.sentinels.is_empty() {
            let master = self.master.as_deref().unwrap_or("?");
            format!("master {master} via sentinels {} ({url})", self.sentinels.join(","))
        } else {
            url
        }
    }
}

/// The api's public base URL: where clients reach the status endpoint.
#[derive(Debug, Clone, clap::Args)]
pub struct PublicUrlArgs {
    /// Public base URL of the api, used in `status_url`, `Location` and `result_url`
    /// (empty: relative URLs).
    #[arg(long = "public-url", env = "INFERPUSH_PUBLIC_URL", default_value = "")]
    pub public_url: String,
}

impl PublicUrlArgs {
    /// The base URL without a trailing slash.
    pub fn base(&self) -> String {
        self.public_url.trim_end_matches('/').to_owned()
    }
}

/// The model repository: one folder per model with its `model.toml` card. The api and
/// the workers read the same one.
#[derive(Debug, Clone, clap::Args)]
pub struct RepositoryArgs {
    /// The model repository's folder [default: models].
    #[arg(long = "model-repository", env = "INFERPUSH_MODEL_REPOSITORY")]
    pub model_repository: Option<std::path::PathBuf>,
    /// The repository's former name (`INFERPUSH_MODEL_DIR`), still read when the new one is unset.
    #[arg(long = "model-dir", env = "INFERPUSH_MODEL_DIR", hide = true)]
    pub model_dir: Option<std::path::PathBuf>,
}

impl RepositoryArgs {
    /// The repository's folder.
    pub fn dir(&self) -> std::path::PathBuf {
        self.model_repository.clone().or_else(|| self.model_dir.clone()).unwrap_or_else(|| "models".into())
    }

    /// Reads and checks every card (`files`: how far the model files are checked), and
    /// makes the models' names known to the metrics.
    pub fn load(
        &self,
        files: inferpush_repository::FileCheck,
    ) -> Result<inferpush_repository::Repository, inferpush_repository::CardError> {
        let repository = inferpush_repository::Repository::load(&self.dir(), files)?;
        crate::metrics::know_models(repository.names().into_iter().map(str::to_owned).collect());
        Ok(repository)
    }
}

/// Where tasks' events go, as both the api (which validates and advertises the choice) and
/// the worker (which delivers) must agree.
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryArgs {
    /// The sinks this deployment turns on, comma-separated from `pusher`, `sse`, `mqtt`,
    /// `webhook`.
    #[arg(
        long = "sinks",
        env = "INFERPUSH_SINKS",
        default_value = "pusher,sse,webhook",
        value_delimiter = ',',
        value_parser = parse_sink
    )]
    pub sinks: Vec<SinkKind>,
    /// MQTT topics are `{prefix}/{user}/events`.
    #[arg(long = "mqtt-topic-prefix", env = "INFERPUSH_MQTT_TOPIC_PREFIX", default_value = "inferpush")]
    pub mqtt_topic_prefix: String,
    /// The Standard Webhooks signing secret (`whsec_` and the base64 of 24–64 random
    /// bytes). Without one, webhooks are off outside development mode.
    #[arg(long = "webhook-secret", env = "INFERPUSH_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Hosts, addresses or CIDR networks that webhooks may target even though they are
    /// private or loopback (comma-separated); public hosts are always allowed.
    #[arg(long = "webhook-allowed-hosts", env = "INFERPUSH_WEBHOOK_ALLOWED_HOSTS", value_delimiter = ',')]
    pub webhook_allowed_hosts: Vec<String>,
}

fn parse_sink(text: &str) -> Result<SinkKind, String> {
    text.parse()
}

impl DeliveryArgs {
    /// The sinks turned on, each once, in a stable order. Webhooks count only with a
    /// secret to sign them (in development mode, the well-known one).
    pub fn enabled(&self, dev_mode: bool) -> Vec<SinkKind> {
        let mut enabled = self.sinks.clone();
        let unsigned = matches!(self.webhook_secret(dev_mode), Ok(None));
        enabled.retain(|kind| *kind != SinkKind::Webhook || !unsigned);
        enabled.sort();
        enabled.dedup();
        enabled
    }

    /// The webhook signing secret: the one set, or in development mode the well-known one;
    /// none outside it.
    pub fn webhook_secret(&self, dev_mode: bool) -> Result<Option<WebhookSecret>, String> {
        match (self.webhook_secret.as_deref().filter(|s| !s.is_empty()), dev_mode) {
            (Some(secret), _) => {
                WebhookSecret::parse(secret).map(Some).map_err(|e| format!("INFERPUSH_WEBHOOK_SECRET: {e}"))
            }
            (None, true) => Ok(Some(WebhookSecret::parse(DEV_WEBHOOK_SECRET).expect("a valid secret"))),
            (None, false) => Ok(None),
        }
    }

    /// Which webhook targets are allowed.
    pub fn webhook_targets(&self) -> Result<WebhookTargets, String> {
        WebhookTargets::parse(&self.webhook_allowed_hosts)
            .map_err(|e| format!("INFERPUSH_WEBHOOK_ALLOWED_HOSTS: {e}"))
    }

    /// Checks what start-up reads; says so when webhooks are listed but off for want of a
    /// secret.
    pub fn check(&self, dev_mode: bool) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.sinks.is_empty(),
            "INFERPUSH_SINKS is empty: turn on at least one of pusher, sse, mqtt, webhook"
        );
        let prefix = &self.mqtt_topic_prefix;
        anyhow::ensure!(
            !prefix.is_empty() && !prefix.contains(['+', '#']),
            "INFERPUSH_MQTT_TOPIC_PREFIX must be a non-empty topic without wildcards (`+`, `#`), not `{prefix}`"
        );
        self.webhook_targets().map_err(anyhow::Error::msg)?;
        let secret = self.webhook_secret(dev_mode).map_err(anyhow::Error::msg)?;
        if self.sinks.contains(&SinkKind::Webhook) && secret.is_none() {
            tracing::warn!(
                "webhooks are off: INFERPUSH_SINKS lists `webhook` but INFERPUSH_WEBHOOK_SECRET is not set \
                 (generate one with `echo whsec_$(openssl rand -base64 32)`); tasks that ask for one get a 422"
            );
        }
        Ok(())
    }
}

/// The webhook secret of development mode when none is set: well known, so only
/// `INFERPUSH_DEV_MODE=true` uses it (the README names it for local receivers).
pub const DEV_WEBHOOK_SECRET: &str = "whsec_aW5mZXJwdXNoLWRldmVsb3BtZW50LW9ubHktc2VjcmV0";

/// Reads `250ms`, `30s`, `15m`, `24h` or `1h 30m` (humantime's syntax); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration like 30s or 15m: {e}"))
}

/// Replaces the password of `scheme://user:password@host` with `***`. The user info ends
/// at the last `@` of the URL, so a password written raw with `@`, `:`, `/`, `?` or `#`
/// in it is hidden whole (an `@` in the path hides a little more than needed, never less).
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host_and_path)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host_and_path}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Both {
        #[command(flatten)]
        pusher: PusherArgs,
        #[command(flatten)]
        amqp: AmqpArgs,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        public: PublicUrlArgs,
        #[command(flatten)]
        delivery: DeliveryArgs,
    }

    #[test]
    fn redis_shapes_are_read_and_sentinels_without_a_master_name_refused() {
        let target = |args: &[&str]| {
            Both::try_parse_from([&["x"], args].concat()).unwrap().store.target(&TrustedCas::default())
        };
        let one = target(&[]).unwrap();
        assert!(one.sentinels.is_empty() && one.cluster_nodes.is_empty());
        assert_eq!(one.durability.replicas, 0, "no replica to wait for");
        let sentinel = target(&["--redis-sentinels", "s1:26379, s2:26379", "--redis-master", "m"]).unwrap();
        assert_eq!(
            (sentinel.sentinels, sentinel.master.as_str()),
            (vec!["s1:26379".into(), "s2:26379".into()], "m")
        );
        assert_eq!(sentinel.durability.replicas, 1, "behind Sentinels a write waits for the replica");
        let cluster = target(&["--redis-cluster-nodes", "a:6379,b:6379"]).unwrap();
        assert_eq!(cluster.cluster_nodes, ["a:6379", "b:6379"]);
        let refused = target(&["--redis-sentinels", "s1:26379"]).unwrap_err().to_string();
        assert!(refused.contains("INFERPUSH_REDIS_MASTER"), "{refused}");
        assert!(
            Both::try_parse_from(["x", "--redis-sentinels", "s:1", "--redis-cluster-nodes", "a:1"]).is_err(),
            "Sentinels and a cluster at once"
        );
    }

    #[test]
    fn webhooks_are_on_only_with_a_secret_to_sign_them() {
        let parse = |args: &[&str]| Both::try_parse_from([&["x"], args].concat()).unwrap().delivery;
        let default = parse(&[]);
        assert_eq!(
            default.sinks,
            [SinkKind::Pusher, SinkKind::Sse, SinkKind::Webhook],
            "the documented default"
        );
        assert_eq!(default.enabled(false), [SinkKind::Pusher, SinkKind::Sse], "no secret, no webhooks");
        assert_eq!(
            default.enabled(true),
            [SinkKind::Pusher, SinkKind::Sse, SinkKind::Webhook],
            "dev mode's secret"
        );
        let signed = parse(&["--webhook-secret", DEV_WEBHOOK_SECRET, "--sinks", "webhook,mqtt,webhook"]);
        assert_eq!(signed.enabled(false), [SinkKind::Mqtt, SinkKind::Webhook]);
        let bad = parse(&["--webhook-secret", "hunter2"]);
        assert!(bad.check(false).unwrap_err().to_string().contains("INFERPUSH_WEBHOOK_SECRET"));
        assert!(Both::try_parse_from(["x", "--sinks", "pusher,fax"]).is_err());
        assert!(parse(&["--mqtt-topic-prefix", "a/#"]).check(true).is_err());
    }

    #[test]
    fn argument_definitions_are_consistent() {
        use clap::CommandFactory;
        Both::command().debug_assert();
    }

    #[test]
    fn defaults_reach_the_local_services() {
        let both = Both::try_parse_from(["x"]).unwrap();
        assert_eq!(both.pusher.base_url(), "http://127.0.0.1:6001");
        assert_eq!(both.amqp.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(both.store.ttl(), Duration::from_secs(24 * 3600));
        assert!(both.pusher.master_key().unwrap().is_none());
    }

    #[test]
    fn the_deprecated_ttl_in_seconds_still_counts() {
        let both = Both::try_parse_from(["x", "--result-ttl-secs", "60"]).unwrap();
        assert_eq!(both.store.ttl(), Duration::from_secs(60));
        let both = Both::try_parse_from(["x", "--result-ttl", "2m"]).unwrap();
        assert_eq!(both.store.ttl(), Duration::from_secs(120));
    }

    #[test]
    fn durations_take_units_and_bare_seconds() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("900"), Ok(Duration::from_secs(900)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn outside_development_mode_the_default_app_and_short_secrets_are_refused() {
        let refusal = |args: &[&str]| {
            let both = Both::try_parse_from([&["x"], args].concat()).unwrap();
            both.pusher.ensure_own_app().err().map(|e| e.0)
        };
        let own = ["--pusher-app-id", "shop", "--pusher-app-key", "shop-key"];
        let long_secret = "0123456789abcdef0123";
        assert!(
            refusal(&[])
                .unwrap()
                .starts_with("PUSHER_APP_SECRET is Soketi's and Sockudo's well-known default")
        );
        let short = refusal(&[&own[..], &["--pusher-app-secret", "hunter2"]].concat()).unwrap();
        assert!(short.starts_with("PUSHER_APP_SECRET is too short"), "{short}");
        assert!(!short.contains("hunter2"), "the message never shows the secret");
        let key = refusal(&["--pusher-app-secret", long_secret]).unwrap();
        assert!(key.starts_with("PUSHER_APP_KEY"), "{key}");
        assert_eq!(refusal(&[&own[..], &["--pusher-app-secret", long_secret]].concat()), None);
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url_password("amqp://guest:guest@h:5672/%2f"), "amqp://guest:***@h:5672/%2f");
        assert_eq!(redact_url_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact_url_password("redis://u:p@ss:w@rd@h:6379/0"), "redis://u:***@h:6379/0");
        assert_eq!(redact_url_password("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact_url_password("amqp://u:pa/ss?w#d@h/vhost"), "amqp://u:***@h/vhost");
    }
}
