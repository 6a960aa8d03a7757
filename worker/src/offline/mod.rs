//! The worker's engines alone, with no RabbitMQ, Redis or Soketi, on the device and
//! precision the usual flags choose: for checking an engine against a reference and
//! measuring it. `scripts/gpu-check.sh` runs both on a GPU machine.

pub mod embed;
pub mod generate;

use anyhow::Context;
use inferpush_repository::{FileCheck, Model};

use crate::config::WorkerConfig;

/// The repository's model `name`, its files present.
fn model(config: &WorkerConfig, name: &str) -> anyhow::Result<Model> {
    let repository = config.repository.load(FileCheck::Exists)?;
    repository.get(name).cloned().with_context(|| {
        format!("no model `{name}` in the repository; it has: {}", repository.names().join(", "))
    })
}
