//! The inferpush worker: consumes tasks from RabbitMQ ([`queue`]), runs the model
//! ([`model`], [`processing`]), announces each result to its owner ([`delivery`]: Pusher
//! through Soketi, server-sent events, MQTT, webhooks), and only then acknowledges.

pub mod config;
pub mod delivery;
pub mod health;
pub mod heartbeat;
pub mod metrics;
pub mod model;
pub mod offline;
pub mod processing;
pub mod queue;
pub mod streaming;
