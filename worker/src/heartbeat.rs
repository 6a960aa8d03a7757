//! The worker's heartbeat in Redis: while it consumes its queues, it says every
//! [`INTERVAL`] which models it serves, for [`TTL`]; when it stops consuming or shuts
//! down it withdraws at once. The api counts the live workers of each model from these
//! (`GET /v1/models`: `ready`, `workers`). A worker that dies drops out when its TTL ends.

use std::sync::Arc;
use std::time::Duration;

use inferpush_store::Presence;
use tokio_util::sync::CancellationToken;

use crate::health::Readiness;

/// How often the heartbeat is renewed.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How long one heartbeat lasts: three renewals may be missed (a slow Redis) before the
/// worker stops counting.
pub const TTL: Duration = Duration::from_secs(15);

/// A name for this worker process, unique across machines and restarts.
pub fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".into());
    format!("{host}-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple())
}

/// Announces `models` while `readiness` says the worker consumes, until `stop`; then withdraws.
pub async fn run(
    presence: Arc<dyn Presence>,
    worker: String,
    models: Vec<String>,
    readiness: Readiness,
    stop: CancellationToken,
) {
    let models: Vec<&str> = models.iter().map(String::as_str).collect();
    let mut announced = false;
    loop {
        let outcome = if readiness.is_ready() {
            presence.announce(&worker, &models, TTL).await.map(|()| true)
        } else if announced {
            presence.withdraw(&worker).await.map(|()| false)
        } else {
            Ok(false)
        };
        match outcome {
            Ok(now) => announced = now,
            Err(error) => tracing::warn!(%error, "could not renew the worker's heartbeat in Redis"),
        }
        // Until the first heartbeat, readiness is looked at often, so a worker counts
        // as soon as it consumes.
        let pause = if announced { INTERVAL } else { Duration::from_millis(250) };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    if let Err(error) = presence.withdraw(&worker).await {
        tracing::warn!(%error, "could not withdraw the worker's heartbeat; it ends with its TTL");
    }
}
