//! Command-line and environment settings shared by the api and the worker.

use crate::signature::AppCredentials;

/// The Pusher app, under Laravel's variable names.
#[derive(Debug, Clone, clap::Args)]
pub struct PusherArgs {
    /// Pusher (Soketi) app id.
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
        hide_default_value = true
    )]
    pub secret: String,
    /// Host of Soketi's HTTP API and WebSocket server.
    #[arg(long = "pusher-host", env = "PUSHER_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port of Soketi's HTTP API and WebSocket server.
    #[arg(long = "pusher-port", env = "PUSHER_PORT", default_value_t = 6001)]
    pub port: u16,
    /// `http` or `https`.
    #[arg(long = "pusher-scheme", env = "PUSHER_SCHEME", default_value = "http", value_parser = ["http", "https"])]
    pub scheme: String,
}

impl PusherArgs {
    /// The app id, key and secret.
    pub fn credentials(&self) -> AppCredentials {
        AppCredentials::new(&self.app_id, &self.key, &self.secret)
    }

    /// Base URL of the Pusher HTTP API, e.g. `http://127.0.0.1:6001`.
    pub fn base_url(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
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
        hide_default_value = true
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
    #[arg(long = "delivery-limit", env = "INFERPUSH_DELIVERY_LIMIT", default_value_t = crate::topology::DEFAULT_DELIVERY_LIMIT)]
    pub delivery_limit: u32,
}

impl AmqpArgs {
    /// The topology these settings name.
    pub fn topology(&self) -> crate::topology::Topology {
        let mut topology = crate::topology::Topology::new(&self.prefix);
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
    #[arg(id = "redis_url", long = "redis-url", env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub url: String,
    /// Prefix of every Redis key, so deployments can share a server.
    #[arg(
        id = "redis_prefix",
        long = "redis-prefix",
        env = "INFERPUSH_REDIS_PREFIX",
        default_value = "inferpush"
    )]
    pub prefix: String,
    /// How long task state and results are kept, in seconds.
    #[arg(long = "result-ttl-secs", env = "INFERPUSH_RESULT_TTL_SECS", default_value_t = 24 * 3600)]
    pub ttl_secs: u64,
}

impl StoreArgs {
    /// The URL with any password replaced, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url_password(&self.url)
    }
}

/// Replaces the password of `scheme://user:password@host` with `***`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url_password("amqp://guest:guest@h:5672/%2f"), "amqp://guest:***@h:5672/%2f");
        assert_eq!(redact_url_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
