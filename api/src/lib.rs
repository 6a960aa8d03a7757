//! The inferpush HTTP gateway: accepts inference tasks, hands them to RabbitMQ with
//! publisher confirms, records their state in Redis, serves that state to their owners,
//! and signs Pusher channel subscriptions for them.

pub mod body;
pub mod broker;
pub mod config;
pub mod error;
pub mod keys;
pub mod routes;
pub mod user;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use inferpush_protocol::AppCredentials;
use inferpush_store::TaskStore;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::broker::Broker;
use crate::keys::ApiKeys;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    /// The task publisher.
    pub broker: Arc<Broker>,
    /// Task state and results.
    pub store: TaskStore,
    /// Known API keys.
    pub keys: Arc<ApiKeys>,
    /// The Pusher app whose secret signs subscriptions.
    pub pusher: Arc<AppCredentials>,
    /// Prefix for absolute URLs in responses (may be empty).
    pub public_url: String,
    /// Request body limit, for error messages.
    pub max_body_bytes: usize,
}

/// The whole service.
pub fn app(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .merge(routes::inference::router())
        .merge(routes::tasks::router())
        .merge(routes::channel_auth::router())
        .merge(routes::models::router())
        .merge(routes::health::router())
        .fallback(|| async { error::AppError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then drains requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}
