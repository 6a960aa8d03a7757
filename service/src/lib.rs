//! The start-up pieces the api and the worker share, so each exists once: the settings
//! both take ([`settings`]), tracing ([`telemetry`]), the shutdown signal ([`shutdown`]),
//! the queue topology declared on a broker ([`amqp`]), side listeners ([`listen`]), Prometheus metrics ([`metrics`]), and trust for TLS to the services
//! ([`tls`]).

pub mod amqp;
pub mod listen;
pub mod metrics;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod tls;

pub use settings::{
    AmqpArgs, DeliveryArgs, PublicUrlArgs, PushServer, PusherArgs, RepositoryArgs, StoreArgs, parse_duration,
};
pub use shutdown::shutdown_signal;
pub use telemetry::init_tracing;
pub use tls::{TlsArgs, TrustedCas};
