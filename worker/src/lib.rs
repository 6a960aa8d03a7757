//! The inferpush worker: consumes tasks from RabbitMQ, runs the model, pushes each
//! result to its owner's channel through Soketi, and only then acknowledges.

pub mod config;
pub mod consumer;
pub mod model;
pub mod offline;
pub mod publisher;
pub mod task;
