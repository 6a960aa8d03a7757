//! Helpers for inferpush's end-to-end tests: start the real Soketi, api and worker as
//! child processes on free ports, talk to them with a real Pusher WebSocket client, and
//! look at the real RabbitMQ queues.

pub mod accounting;
pub mod broker;
pub mod burst;
pub mod listener;
pub mod node;
pub mod process;
pub mod stack;

pub use inferpush_client::pusher::{PusherClient, PusherMessage};
pub use stack::{Stack, StackOptions};
