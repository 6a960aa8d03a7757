//! Helpers for inferpush's end-to-end tests: start the real push server (Soketi or
//! Sockudo), api and worker as child processes on free ports, talk to them with a real
//! Pusher WebSocket client, and look at the real RabbitMQ queues; or, in the container
//! mode, with the push server, RabbitMQ and Redis in containers.

pub mod accounting;
pub mod bench;
pub mod broker;
pub mod burst;
pub mod containers;
pub mod examples;
pub mod listener;
pub mod metrics;
pub mod mosquitto;
pub mod node;
pub mod otlp;
pub mod process;
pub mod push_server;
pub mod sse;
pub mod stack;
pub mod tcp_proxy;
pub mod tls;
pub mod webhooks;

pub use inferpush_client::pusher::{PusherClient, PusherMessage};
pub use push_server::PushServer;
pub use stack::{Services, Stack, StackOptions};
