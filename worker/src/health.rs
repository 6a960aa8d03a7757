//! The worker's own small HTTP listener (`INFERPUSH_METRICS_ADDR`, by default
//! 127.0.0.1:9464): `GET /healthz` (the process is up) and `GET /readyz` (it is consuming
//! its queues: connected to RabbitMQ with its consumers in place), which container
//! healthchecks and Kubernetes probes use, and `GET /metrics` for Prometheus (see
//! [`crate::metrics`]).
//!
//! When the address is taken (a second worker on the same machine with the default), the
//! listener takes a free port on the same interface instead and says which in the log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Whether the worker is consuming; cheap to clone and share.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the worker as consuming (`true`) or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// True while the worker is consuming.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The listener's routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(inferpush_service::metrics::serve_metrics))
        .with_state(readiness)
}

async fn healthz() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, axum::Json<Value>) {
    if readiness.is_ready() {
        (StatusCode::OK, axum::Json(json!({"status": "ready", "rabbitmq": "consuming"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "rabbitmq": "connecting"})),
        )
    }
}

/// Binds `addr` (or, when it is taken, a free port on the same interface) and serves
/// until `stop` fires; answers the address it listens on.
pub async fn spawn(
    addr: SocketAddr,
    readiness: Readiness,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = inferpush_service::listen::bind_or_free_port(addr, "health listener").await?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "health listener on /healthz, /readyz and /metrics");
    tokio::spawn(async move {
        let served =
            axum::serve(listener, router(readiness)).with_graceful_shutdown(stop.cancelled_owned()).await;
        if let Err(error) = served {
            tracing::error!(%error, "the health listener stopped");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_status(addr: SocketAddr, path: &str) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer.split(' ').nth(1).unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn ready_only_while_consuming_and_a_taken_port_is_not_fatal() {
        let readiness = Readiness::default();
        let stop = CancellationToken::new();
        let first = spawn("127.0.0.1:0".parse().unwrap(), readiness.clone(), stop.clone()).await.unwrap();
        assert_eq!(get_status(first, "/healthz").await, 200);
        assert_eq!(get_status(first, "/readyz").await, 503);
        readiness.set(true);
        assert_eq!(get_status(first, "/readyz").await, 200);

        let second = spawn(first, Readiness::default(), stop.clone()).await.unwrap();
        assert_ne!(second, first, "took another port");
        assert_eq!(get_status(second, "/healthz").await, 200);
        stop.cancel();
    }
}
