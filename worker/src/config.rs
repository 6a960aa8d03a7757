//! The worker's settings: one clap struct, every field a flag with an environment fallback.

use std::time::Duration;

use clap::Parser;
use inferpush_service::{
    AmqpArgs, DeliveryArgs, PublicUrlArgs, PusherArgs, RepositoryArgs, StoreArgs, TlsArgs, parse_duration,
};

use crate::delivery::pusher::SOKETI_MAX_EVENT_BYTES;
use crate::model::ServeSettings;
use crate::model::device::{DeviceChoice, Precision};
use crate::model::embedding::EngineChoice;

/// `inferpush-worker`: runs models on queued tasks and delivers their results (Soketi, SSE, MQTT, webhooks).
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct WorkerConfig {
    /// Instead of serving: run an engine once, offline.
    #[command(subcommand)]
    pub command: Option<WorkerCommand>,
    /// Models this worker serves, comma-separated names of the repository's cards; it
    /// consumes only their queues [default: every model of the repository].
    #[arg(long, env = "INFERPUSH_MODELS", value_delimiter = ',')]
    pub models: Vec<String>,
    #[command(flatten)]
    pub repository: RepositoryArgs,
    /// Engine for embedding models: `auto` takes the card's `runtime.engine`, and for `auto`
    /// there ONNX Runtime when its files are present.
    #[arg(long, env = "INFERPUSH_ENGINE", value_enum, default_value = "auto")]
    pub engine: EngineChoice,
    /// Where the models run, over each card's `runtime.device`: `cpu`, or `cuda` / `cuda:N`
    /// in a GPU build (`make build-gpu`); a GPU means the candle engine.
    #[arg(long, env = "INFERPUSH_DEVICE")]
    pub device: Option<DeviceChoice>,
    /// Precision of the candle engine (`f16` is for GPUs).
    #[arg(long, env = "INFERPUSH_DTYPE", value_enum, default_value = "f32")]
    pub dtype: Precision,
    /// Threads for a forward pass.
    #[arg(long, env = "INFERPUSH_THREADS", default_value_t = default_threads())]
    pub threads: usize,
    /// Most texts in one forward pass, over each card's `batching.max_batch_size`
    /// (dynamic batching; a task's texts may take several).
    #[arg(long, env = "INFERPUSH_MAX_BATCH_SIZE")]
    pub max_batch_size: Option<usize>,
    /// Most tokens in one forward pass, padding included (rows × the longest row), over
    /// each card's `batching.max_batch_tokens`; at least one text of the longest. (256,
    /// all-MiniLM-L6-v2's card, measured best on 2 CPU cores, where a larger pass gains
    /// nothing but padding; a GPU wants thousands.)
    #[arg(long, env = "INFERPUSH_MAX_BATCH_TOKENS")]
    pub max_batch_tokens: Option<usize>,
    /// Longest wait for more texts once one is in hand, while a pass is not full (0: none;
    /// under load passes fill while the engine is busy).
    #[arg(long, env = "INFERPUSH_MAX_BATCH_DELAY", default_value = "0ms", value_parser = parse_duration)]
    pub max_batch_delay: Duration,
    /// Unacknowledged tasks held per queue (AMQP prefetch), over each card's
    /// `batching.prefetch` (64 when the card says nothing), and for the dead letters.
    #[arg(long, env = "INFERPUSH_PREFETCH")]
    pub prefetch: Option<u16>,
    /// Largest event data pushed inline, in bytes (Soketi's limit).
    #[arg(long, env = "INFERPUSH_MAX_EVENT_BYTES", default_value_t = SOKETI_MAX_EVENT_BYTES)]
    pub max_event_bytes: usize,
    /// Concurrent `batch_events` calls to Soketi.
    #[arg(long, env = "INFERPUSH_PUSH_CONCURRENCY", default_value_t = 4)]
    pub push_concurrency: usize,
    /// How long to keep retrying a result's push to Soketi, or its entry in the event log,
    /// before acking anyway (it stays retrievable).
    #[arg(long, env = "INFERPUSH_PUSH_DEADLINE", default_value = "120s", value_parser = parse_duration)]
    pub push_deadline: Duration,
    /// The MQTT broker (`mqtt` sink): `mqtt://host:port` or `mqtts://host:port`, optionally
    /// with `user:password@`.
    #[arg(long, env = "INFERPUSH_MQTT_URL", default_value = "mqtt://127.0.0.1:1883", hide_env_values = true)]
    pub mqtt_url: String,
    /// The MQTT user name (wins over the URL's).
    #[arg(long, env = "INFERPUSH_MQTT_USERNAME")]
    pub mqtt_username: Option<String>,
    /// The MQTT password (wins over the URL's).
    #[arg(long, env = "INFERPUSH_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// How long an event is held for the MQTT broker (through its restarts) before giving up.
    #[arg(long, env = "INFERPUSH_MQTT_DEADLINE", default_value = "120s", value_parser = parse_duration)]
    pub mqtt_deadline: Duration,
    /// How long a webhook is retried (5xx, timeouts) before giving up. The attempts run
    /// from the webhook queue, off the task, with delays growing to an hour: a dead
    /// receiver costs no worker capacity however long this is.
    #[arg(long, env = "INFERPUSH_WEBHOOK_DEADLINE", default_value = "24h", value_parser = parse_duration)]
    pub webhook_deadline: Duration,
    /// Webhook attempts one worker makes at once (its prefetch on the webhook queue).
    #[arg(long, env = "INFERPUSH_WEBHOOK_CONCURRENCY", default_value_t = 32)]
    pub webhook_concurrency: u16,
    /// Also consume the dead-letter queue: fail those tasks and tell their users.
    #[arg(long, env = "INFERPUSH_DEAD_LETTERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub dead_letters: bool,
    /// Development mode (`make run`): the push servers' well-known default app credentials are
    /// accepted. Outside it the worker refuses them, and secrets too short to be one.
    #[arg(long, env = "INFERPUSH_DEV_MODE", default_value_t = false)]
    pub dev_mode: bool,
    /// The worker's own listener (`/healthz`, `/readyz`); when taken, a free port instead.
    #[arg(long, env = "INFERPUSH_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: std::net::SocketAddr,
    /// Check the settings as at start (unsafe values refused, files read, model names known)
    /// and exit without loading a model or opening any connection: `configuration ok`, or
    /// the reason and exit status 1.
    #[arg(long)]
    pub check_config: bool,
    /// On SIGTERM, how long to let tasks in hand finish before giving them back to the queue.
    #[arg(long, env = "INFERPUSH_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    // The api's public URL: the base of `result_url` for results too large to push inline.
    #[command(flatten)]
    pub public: PublicUrlArgs,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub pusher: PusherArgs,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl WorkerConfig {
    /// What start-up checks before loading a model or opening a connection: the settings,
    /// and the repository's cards, of which the models served here must be. Gives the
    /// repository, read once (`--check-config` also checks the served models' files).
    pub fn check(&self) -> anyhow::Result<inferpush_repository::Repository> {
        use anyhow::Context;
        if !self.dev_mode {
            self.pusher.ensure_own_app()?;
        }
        let repository = self.repository.load(inferpush_repository::FileCheck::None)?;
        let served = crate::model::served_names(&repository, &self.models)?;
        anyhow::ensure!(!served.is_empty(), "{}", crate::model::RegistryError::Empty);
        self.pusher.master_key().context("reading PUSHER_ENCRYPTION_MASTER_KEY")?;
        self.tls.trusted()?;
        self.delivery.check(self.dev_mode)?;
        Ok(repository)
    }
}

/// What the worker can do besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum WorkerCommand {
    /// Embed a file of sentences with the configured engine, device and precision, and
    /// report throughput (no RabbitMQ, Redis or Soketi): for checks and benchmarks.
    Embed(crate::offline::embed::EmbedArgs),
    /// Generate greedily from a file of prompts on the configured device, compare it
    /// token by token with the CPU network (llama.cpp's numbers), and report tokens/s
    /// for several streams at once: for checks and benchmarks.
    Generate(crate::offline::generate::GenerateArgs),
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

impl WorkerConfig {
    /// How the models are loaded and batched: the cards' settings, and what overrides them.
    pub fn serve(&self) -> ServeSettings {
        ServeSettings {
            repository: self.repository.dir(),
            engine: self.engine,
            device: self.device,
            precision: self.dtype,
            threads: self.threads.max(1),
            max_batch_size: self.max_batch_size,
            max_batch_tokens: self.max_batch_tokens,
            max_batch_delay: self.max_batch_delay,
            prefetch: self.prefetch,
        }
    }

    /// Unacked dead letters held at once.
    pub fn dead_letter_prefetch(&self) -> u16 {
        self.prefetch.unwrap_or(64).max(1)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn argument_definitions_are_consistent() {
        use clap::CommandFactory;
        WorkerConfig::command().debug_assert();
    }

    #[test]
    fn starts_with_no_arguments_on_the_documented_defaults() {
        let config = WorkerConfig::try_parse_from(["inferpush-worker"]).unwrap();
        assert!(config.models.is_empty(), "every model of the repository");
        assert_eq!(config.repository.dir(), PathBuf::from("models"));
        assert_eq!(config.engine, EngineChoice::Auto);
        assert_eq!(config.device, None, "each card's device");
        assert_eq!(config.dtype, Precision::F32);
        assert_eq!(config.pusher.base_url(), "http://127.0.0.1:6001");
        assert_eq!(config.pusher.credentials().app_id, "app-id");
    }

    #[test]
    fn models_are_a_comma_separated_list() {
        let config = WorkerConfig::try_parse_from(["w", "--models", "echo,other"]).unwrap();
        assert_eq!(config.models, ["echo", "other"]);
    }
}
