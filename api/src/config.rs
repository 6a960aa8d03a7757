//! The api's settings: one clap struct, every field a flag with an environment fallback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use inferpush_service::settings::UnsafeSetting;

use crate::queue::DEFAULT_PUBLISH_TIMEOUT;
use inferpush_service::{
    AmqpArgs, DeliveryArgs, PublicUrlArgs, PusherArgs, RepositoryArgs, StoreArgs, TlsArgs, parse_duration,
};

/// `inferpush-api`: accepts inference tasks and signs Pusher channel subscriptions.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct ApiConfig {
    /// Address to listen on.
    #[arg(long, env = "INFERPUSH_API_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the metrics listener (`GET /metrics` for Prometheus), apart from the
    /// public one; when it is taken, a free port on the same interface (logged).
    #[arg(long, env = "INFERPUSH_API_METRICS_ADDR", default_value = "127.0.0.1:9465")]
    pub metrics_listen: SocketAddr,
    /// API keys, stored hashed: comma-separated `user_id:sha256hex` pairs, where the hex
    /// is the SHA-256 of the key (`printf %s KEY | sha256sum`).
    #[arg(long, env = "INFERPUSH_API_KEYS", default_value = "", hide_default_value = true)]
    pub api_keys: String,
    /// A file of API keys, one `user_id:sha256hex` per line (`#` starts a comment).
    #[arg(long, env = "INFERPUSH_API_KEYS_FILE")]
    pub api_keys_file: Option<std::path::PathBuf>,
    /// Accept HS256 JWTs signed with this secret (user = `sub`).
    #[arg(long, env = "INFERPUSH_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,
    /// Accept RS256 JWTs verified with the public key in this PEM file.
    #[arg(long, env = "INFERPUSH_JWT_RS256_PUBLIC_KEY")]
    pub jwt_rs256_public_key: Option<std::path::PathBuf>,
    /// Required `iss` of JWTs; must be set when JWTs are accepted.
    #[arg(long, env = "INFERPUSH_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of JWTs; must be set when JWTs are accepted.
    #[arg(long, env = "INFERPUSH_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Accept JWTs without checking `iss` and `aud` (any token the key signed, for any
    /// service, passes). Unsafe: only for a key used by inferpush alone.
    #[arg(long, env = "INFERPUSH_JWT_UNSAFE_SKIP_ISSUER_AUDIENCE", default_value_t = false)]
    pub jwt_unsafe_skip_issuer_audience: bool,
    /// Submits per second per user (token bucket refill).
    #[arg(long, env = "INFERPUSH_SUBMIT_RATE", default_value_t = 50)]
    pub submit_rate: u32,
    /// Submits a user may make at once before the rate applies.
    #[arg(long, env = "INFERPUSH_SUBMIT_BURST", default_value_t = 500)]
    pub submit_burst: u32,
    /// Channel authorisations per second per user.
    #[arg(long, env = "INFERPUSH_AUTH_RATE", default_value_t = 10)]
    pub auth_rate: u32,
    /// Channel authorisations a user may make at once.
    #[arg(long, env = "INFERPUSH_AUTH_BURST", default_value_t = 50)]
    pub auth_burst: u32,
    /// Task listings (`GET /v1/inference?since=…`) per second per user.
    #[arg(long, env = "INFERPUSH_LIST_RATE", default_value_t = 10)]
    pub list_rate: u32,
    /// Task listings a user may make at once.
    #[arg(long, env = "INFERPUSH_LIST_BURST", default_value_t = 50)]
    pub list_burst: u32,
    /// Most in-flight slots of a user's unfinished (queued or running) tasks: a task takes
    /// one, a generation one per 64 tokens of its `max_tokens`.
    #[arg(long, env = "INFERPUSH_MAX_IN_FLIGHT", default_value_t = 2000)]
    pub max_in_flight: u64,
    /// Longest a request waits for its result (and never past the request timeout): a
    /// submit with `Prefer: wait`, and every `/v1/embeddings` call (past it: 504 naming
    /// the task, whose result is still pushed and kept).
    #[arg(long, env = "INFERPUSH_MAX_WAIT", default_value = "60s", value_parser = parse_duration)]
    pub max_wait: Duration,
    /// Server-sent event streams one user may hold open on one api replica.
    #[arg(long, env = "INFERPUSH_MAX_STREAMS_PER_USER", default_value_t = 16)]
    pub max_streams_per_user: usize,
    /// Requests one user may hold waiting for their result on one api replica (a submit
    /// with `Prefer: wait`, a `/v1/embeddings` call); past it a `Prefer: wait` submit is
    /// answered 202 at once and `/v1/embeddings` 429, before any task is made.
    #[arg(long, env = "INFERPUSH_MAX_WAITS_PER_USER", default_value_t = 64)]
    pub max_waits_per_user: usize,
    /// A user's fair share of the workers: while their unfinished tasks take at most this
    /// many in-flight slots (one a task, one per 64 tokens of a generation's `max_tokens`),
    /// new ones go to the main lane of their model's queue; past it, to the bulk
    /// lane, which workers serve after the main one. A user's backlog then never delays
    /// another user's few tasks. At or above INFERPUSH_MAX_IN_FLIGHT, every task takes the
    /// main lane (plain first-in, first-out).
    #[arg(long, env = "INFERPUSH_FAIR_SHARE", default_value_t = 16)]
    pub fair_share: u64,
    /// Most result bytes one user may hold over one result TTL (each task counts an estimate
    /// of its result when accepted); 0 turns the quota off.
    #[arg(long, env = "INFERPUSH_RESULT_QUOTA_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub result_quota_bytes: u64,
    /// Browser origins allowed to call the api (CORS), comma-separated.
    /// Each is `*` (any origin) or `scheme://host[:port]`.
    #[arg(long, env = "INFERPUSH_CORS_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
    /// Development mode: the keys `dev-alice` and `dev-bob` belong to users `alice` and `bob`.
    /// Never turn this on where strangers can reach the api.
    #[arg(long, env = "INFERPUSH_DEV_MODE", default_value_t = false)]
    pub dev_mode: bool,
    /// Let development mode listen on a non-loopback address (a cluster on one machine
    /// whose balancer publishes it on loopback only). Unsafe anywhere strangers can reach.
    #[arg(long, env = "INFERPUSH_UNSAFE_DEV_MODE_ANY_ADDRESS", default_value_t = false)]
    pub unsafe_dev_mode_any_address: bool,
    /// The demo page's folder, served at `/` in development mode.
    #[arg(long, env = "INFERPUSH_WEB_DEMO_DIR", default_value = "web-demo")]
    pub web_demo_dir: std::path::PathBuf,
    /// Lifetime of the demo page's tokens (development mode).
    #[arg(long, env = "INFERPUSH_DEV_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub dev_token_ttl: Duration,
    /// Key of the demo page's tokens (development mode), shared by api replicas behind one
    /// balancer; random per process when unset.
    #[arg(long, env = "INFERPUSH_DEV_TOKEN_SECRET", hide_env_values = true)]
    pub dev_token_secret: Option<String>,
    /// The push server's host as browsers reach it (development mode's page); default: `PUSHER_HOST`.
    #[arg(long, env = "INFERPUSH_PUBLIC_WS_HOST")]
    pub public_ws_host: Option<String>,
    /// Longest a client may take to send a request's head (slow-header clients are cut off).
    #[arg(long, env = "INFERPUSH_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Longest a connection stays open with no request in flight (an HTTP/2 connection
    /// gone quiet; HTTP/1 keep-alive ends sooner, at INFERPUSH_HEADER_READ_TIMEOUT, which
    /// times the next request's head from the end of the last); a new connection must
    /// bring its first request head within INFERPUSH_HEADER_READ_TIMEOUT.
    #[arg(long, env = "INFERPUSH_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Longest time to answer one request, body included (then 408).
    #[arg(long, env = "INFERPUSH_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Longest a submit waits for the broker to confirm its task (connecting included);
    /// past it the answer is a 503 that names the task, whose outcome is then unknown.
    /// Must be shorter than the request timeout [default: 15s, or half the request timeout
    /// if that is shorter].
    #[arg(long, env = "INFERPUSH_PUBLISH_TIMEOUT", value_parser = parse_duration)]
    pub publish_timeout: Option<Duration>,
    /// How long a task may stay recorded without its publish settled before any replica's
    /// sweep takes it over (publishes it again, or settles it); covers a replica that died
    /// mid-submit. Must be longer than the publish timeout.
    #[arg(long, env = "INFERPUSH_UNSETTLED_GRACE", default_value = "60s", value_parser = parse_duration)]
    pub unsettled_grace: Duration,
    /// Most client connections held at once; past it a new one closes the connection idle
    /// the longest, or, when every one is busy, waits in the kernel's queue.
    #[arg(long, env = "INFERPUSH_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "INFERPUSH_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Check the settings as at start (files read, unsafe values refused) and exit without
    /// opening any connection: `configuration ok`, or the reason and exit status 1.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub repository: RepositoryArgs,
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

/// A CORS origin: `*`, or `scheme://host[:port]` with nothing after it (blank entries of
/// a comma-separated list are dropped later).
fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim();
    if origin.is_empty() || origin == "*" {
        return Ok(origin.to_owned());
    }
    let valid = origin.split_once("://").is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
            && !rest.is_empty()
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
    });
    if valid {
        Ok(origin.to_owned())
    } else {
        Err(format!(
            "`{origin}` is not an origin: write `*` or `scheme://host[:port]`, e.g. https://app.example"
        ))
    }
}

/// The shortest HS256 secret accepted outside development mode (RFC 7518 §3.2: a key at
/// least as long as the hash, 256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

impl ApiConfig {
    /// The longest `Prefer: wait` honoured: the setting, kept a second inside the request
    /// timeout so the answer always beats the 408.
    pub fn max_wait(&self) -> Duration {
        self.max_wait.min(self.request_timeout.saturating_sub(Duration::from_secs(1)))
    }

    /// The HTTP server's bounds.
    pub fn server_limits(&self) -> crate::ServerLimits {
        crate::ServerLimits {
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
            idle_timeout: self.idle_timeout,
            max_connections: self.max_connections,
        }
    }

    /// How long a submit waits for the broker's confirm: as set, else 15 s or half the
    /// request timeout, whichever is shorter.
    pub fn publish_timeout(&self) -> Duration {
        self.publish_timeout.unwrap_or_else(|| DEFAULT_PUBLISH_TIMEOUT.min(self.request_timeout / 2))
    }

    /// Refuses settings that would leave a deployment open, naming the variable.
    pub fn ensure_safe(&self) -> Result<(), UnsafeSetting> {
        if !self.dev_mode {
            self.pusher.ensure_own_app()?;
        } else if !self.listen.ip().is_loopback() && !self.unsafe_dev_mode_any_address {
            return Err(UnsafeSetting(format!(
                "INFERPUSH_DEV_MODE=true accepts well-known keys and mints tokens for anyone, so it listens on \
                 loopback only; INFERPUSH_API_ADDR={} is not (set INFERPUSH_UNSAFE_DEV_MODE_ANY_ADDRESS=true \
                 only behind a balancer that publishes it on loopback)",
                self.listen
            )));
        }
        let publish_timeout = self.publish_timeout();
        if publish_timeout.is_zero() || publish_timeout >= self.request_timeout {
            return Err(UnsafeSetting(format!(
                "INFERPUSH_PUBLISH_TIMEOUT ({publish_timeout:?}) must be above zero and below \
                 INFERPUSH_REQUEST_TIMEOUT ({:?}), or a submit would be cut off while its publish is still in flight",
                self.request_timeout
            )));
        }
        let hs256 = self.jwt_hs256_secret.as_deref().unwrap_or_default();
        if !self.dev_mode && !hs256.is_empty() && hs256.len() < MIN_HS256_SECRET_BYTES {
            return Err(UnsafeSetting(format!(
                "INFERPUSH_JWT_HS256_SECRET is {} bytes; an HS256 key needs at least {MIN_HS256_SECRET_BYTES} \
                 (as RFC 7518 asks: as long as the hash), or tokens can be forged by guessing it",
                hs256.len()
            )));
        }
        if self.unsettled_grace <= publish_timeout {
            return Err(UnsafeSetting(format!(
                "INFERPUSH_UNSETTLED_GRACE ({:?}) must be longer than INFERPUSH_PUBLISH_TIMEOUT ({publish_timeout:?}), \
                 or sweeps would publish again tasks whose confirm is still on its way",
                self.unsettled_grace
            )));
        }
        let jwts = !hs256.is_empty() || self.jwt_rs256_public_key.is_some();
        let unset = |value: &Option<String>| value.as_deref().is_none_or(str::is_empty);
        if jwts && !self.jwt_unsafe_skip_issuer_audience {
            for (variable, value) in
                [("INFERPUSH_JWT_ISSUER", &self.jwt_issuer), ("INFERPUSH_JWT_AUDIENCE", &self.jwt_audience)]
            {
                if unset(value) {
                    return Err(UnsafeSetting(format!(
                        "JWTs are accepted but {variable} is not set: a token the key signed for another \
                         service would pass; set it (or INFERPUSH_JWT_UNSAFE_SKIP_ISSUER_AUDIENCE=true)"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_definitions_are_consistent() {
        use clap::CommandFactory;
        ApiConfig::command().debug_assert();
    }

    #[test]
    fn starts_with_no_arguments_on_the_documented_defaults() {
        let config = ApiConfig::try_parse_from(["inferpush-api"]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.pusher.app_id, "app-id");
        assert_eq!(config.pusher.key, "app-key");
        assert_eq!(config.pusher.base_url(), "http://127.0.0.1:6001");
        assert_eq!(config.amqp.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
    }

    fn refusal(args: &[&str]) -> Option<String> {
        let config = ApiConfig::try_parse_from([&["inferpush-api"], args].concat()).unwrap();
        config.ensure_safe().err().map(|e| e.0)
    }

    const OWN_APP: [&str; 6] = [
        "--pusher-app-id",
        "shop",
        "--pusher-app-key",
        "shop-key",
        "--pusher-app-secret",
        "0123456789abcdef0123",
    ];

    #[test]
    fn development_mode_is_the_only_place_for_default_credentials_and_it_stays_on_loopback() {
        assert!(refusal(&[]).unwrap().starts_with("PUSHER_APP_SECRET"));
        assert_eq!(refusal(&OWN_APP), None);
        assert_eq!(refusal(&["--dev-mode"]), None, "make run's settings");
        let public = refusal(&["--dev-mode", "--listen", "0.0.0.0:8080"]).unwrap();
        assert!(public.contains("INFERPUSH_API_ADDR=0.0.0.0:8080"), "{public}");
        assert_eq!(refusal(&["--dev-mode", "--listen", "[::1]:8080"]), None);
        assert_eq!(
            refusal(&["--dev-mode", "--listen", "0.0.0.0:8080", "--unsafe-dev-mode-any-address"]),
            None
        );
    }

    #[test]
    fn jwts_need_issuer_and_audience_unless_explicitly_unsafe() {
        let hs = [&OWN_APP[..], &["--jwt-hs256-secret", "s3cret-s3cret-s3cret-s3cret-s3cret"]].concat();
        assert!(refusal(&hs).unwrap().contains("INFERPUSH_JWT_ISSUER is not set"));
        let with_issuer = [&hs[..], &["--jwt-issuer", "https://id.example"]].concat();
        assert!(refusal(&with_issuer).unwrap().contains("INFERPUSH_JWT_AUDIENCE is not set"));
        assert_eq!(refusal(&[&with_issuer[..], &["--jwt-audience", "inferpush"]].concat()), None);
        assert_eq!(refusal(&[&hs[..], &["--jwt-unsafe-skip-issuer-audience"]].concat()), None);
        let rs = [&OWN_APP[..], &["--jwt-rs256-public-key", "/k.pem"]].concat();
        assert!(refusal(&rs).unwrap().contains("INFERPUSH_JWT_ISSUER"));
    }

    #[test]
    fn a_short_hs256_secret_is_refused_outside_development_mode() {
        let with = |secret: &str| {
            let args = ["--jwt-hs256-secret", secret, "--jwt-unsafe-skip-issuer-audience"];
            refusal(&[&OWN_APP[..], &args].concat())
        };
        let refused = with(&"k".repeat(31)).unwrap();
        assert!(
            refused.contains("INFERPUSH_JWT_HS256_SECRET is 31 bytes") && refused.contains("32"),
            "{refused}"
        );
        assert!(!refused.contains(&"k".repeat(31)), "never the value");
        assert_eq!(with(&"k".repeat(32)), None);
        let dev = ["--dev-mode", "--jwt-hs256-secret", "short", "--jwt-unsafe-skip-issuer-audience"];
        assert_eq!(refusal(&dev), None, "development mode takes any");
    }

    #[test]
    fn cors_origins_are_origins_or_a_star() {
        let parse = |value: &str| ApiConfig::try_parse_from(["inferpush-api", "--cors-origins", value]);
        assert_eq!(parse("*").unwrap().cors_origins, ["*"]);
        let list = parse("https://app.example, http://localhost:3000").unwrap().cors_origins;
        assert_eq!(list, ["https://app.example", "http://localhost:3000"]);
        for bad in ["app.example", "https://app.example/path", "https://a b"] {
            let error = parse(bad).unwrap_err().to_string();
            assert!(error.contains("is not an origin"), "{bad}: {error}");
        }
    }

    #[test]
    fn flags_override_defaults() {
        let config = ApiConfig::try_parse_from([
            "inferpush-api",
            "--listen",
            "0.0.0.0:9000",
            "--pusher-app-key",
            "k",
            "--dev-mode",
        ])
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.pusher.key, "k");
        assert!(config.dev_mode);
    }

    #[test]
    fn the_publish_timeout_stays_below_the_request_timeout() {
        let parse = |args: &[&str]| {
            ApiConfig::try_parse_from([&["inferpush-api", "--dev-mode"], args].concat()).unwrap()
        };
        assert_eq!(parse(&[]).publish_timeout(), Duration::from_secs(15));
        let short = parse(&["--request-timeout", "4s"]);
        assert_eq!(short.publish_timeout(), Duration::from_secs(2), "half of a short request timeout");
        assert!(short.ensure_safe().is_ok());
        let error = parse(&["--request-timeout", "4s", "--publish-timeout", "4s"]).ensure_safe().unwrap_err();
        assert!(error.to_string().contains("INFERPUSH_PUBLISH_TIMEOUT"), "{error}");
    }
}
