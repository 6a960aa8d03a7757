//! `GET /healthz` (the process is up) and `GET /readyz` (RabbitMQ and Redis reachable:
//! it can accept tasks).

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

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.broker.is_ready().await {
        (StatusCode::OK, Json(json!({"status": "ready", "rabbitmq": "up"})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "rabbitmq": "down"})))
    }
}
