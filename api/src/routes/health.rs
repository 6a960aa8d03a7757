//! `GET /healthz` (the process is up), `GET /readyz` (RabbitMQ and Redis are reachable:
//! it can accept tasks) and `GET /metrics` (Prometheus, see [`crate::metrics`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::AppState;

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(inferpush_service::metrics::serve_metrics))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (rabbitmq, redis) = tokio::join!(state.queue.is_ready(), state.store.is_ready());
    let word = |up: bool| if up { "up" } else { "down" };
    let body = |status: &str| json!({"status": status, "rabbitmq": word(rabbitmq), "redis": word(redis)});
    if rabbitmq && redis {
        (StatusCode::OK, Json(body("ready")))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body("not ready")))
    }
}
