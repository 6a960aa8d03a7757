//! The api's settings: one clap struct, every field a flag with an environment fallback.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use inferpush_service::{AmqpArgs, PublicUrlArgs, PusherArgs, StoreArgs, parse_duration};

/// `inferpush-api`: accepts inference tasks and signs Pusher channel subscriptions.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct ApiConfig {
    /// Address to listen on.
    #[arg(long, env = "INFERPUSH_API_ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
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
    /// Required `iss` of JWTs, when set.
    #[arg(long, env = "INFERPUSH_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of JWTs, when set.
    #[arg(long, env = "INFERPUSH_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
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
    /// Most unfinished (queued or running) tasks per user.
    #[arg(long, env = "INFERPUSH_MAX_IN_FLIGHT", default_value_t = 2000)]
    pub max_in_flight: u64,
    /// Browser origins allowed to call the api (CORS), comma-separated.
    #[arg(long, env = "INFERPUSH_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Development mode: the keys `dev-alice` and `dev-bob` belong to users `alice` and `bob`.
    /// Never turn this on where strangers can reach the api.
    #[arg(long, env = "INFERPUSH_DEV_MODE", default_value_t = false)]
    pub dev_mode: bool,
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
    /// Soketi's host as browsers reach it (development mode's page); default: `PUSHER_HOST`.
    #[arg(long, env = "INFERPUSH_PUBLIC_WS_HOST")]
    pub public_ws_host: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "INFERPUSH_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    #[command(flatten)]
    pub public: PublicUrlArgs,
    #[command(flatten)]
    pub amqp: AmqpArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub pusher: PusherArgs,
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
}
