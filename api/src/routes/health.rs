//! `GET /healthz` (the process is up) and `GET /readyz` (RabbitMQ and Redis are
//! reachable: it can accept tasks) on the public port; `GET /metrics` (Prometheus, see
//! [`crate::metrics`]) on the metrics listener only (`INFERPUSH_API_METRICS_ADDR`), so that
//! strangers who reach the api never read its figures.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

/// The metrics listener's routes: `/metrics`, and `/healthz` for its own probe.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(metrics)).route("/healthz", get(healthz))
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Up", body = Object, example = json!({"status": "ok"}))))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// RabbitMQ and Redis are reachable: the api can accept tasks.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Object, example = json!({"status": "ready", "rabbitmq": "up", "redis": "up"})),
        (status = 503, description = "Not ready", body = Object, example = json!({"status": "not ready", "rabbitmq": "down", "redis": "up"})),
    ),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (rabbitmq, redis) = tokio::join!(state.queue.is_ready(), state.store.is_ready());
    let word = |up: bool| if up { "up" } else { "down" };
    let body = |status: &str| json!({"status": status, "rabbitmq": word(rabbitmq), "redis": word(redis)});
    if rabbitmq && redis {
        (StatusCode::OK, Json(body("ready")))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body("not ready")))
    }
}

/// Prometheus metrics, in the text exposition format (404 when `INFERPUSH_METRICS=false`).
pub(crate) async fn metrics() -> impl axum::response::IntoResponse {
    inferpush_service::metrics::serve_metrics().await
}
