//! The inferpush HTTP gateway: accepts inference tasks, hands them to RabbitMQ with
//! publisher confirms, records their state in Redis, serves that state to their owners,
//! and signs Pusher channel subscriptions for them.

pub mod body;
pub mod broker;
pub mod config;
pub mod dev;
pub mod error;
pub mod jwt;
pub mod keys;
pub mod limits;
pub mod routes;
pub mod user;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use inferpush_protocol::AppCredentials;
use inferpush_protocol::encryption::MasterKey;
use inferpush_store::TaskStore;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::broker::Broker;
use crate::jwt::JwtVerifier;
use crate::keys::ApiKeys;
use crate::limits::Limits;

/// What every handler may use.
#[derive(Clone)]
pub struct AppState {
    /// The task publisher.
    pub broker: Arc<Broker>,
    /// Task state and results.
    pub store: TaskStore,
    /// Known API keys.
    pub keys: Arc<ApiKeys>,
    /// JWT verification, when configured.
    pub jwt: Option<Arc<JwtVerifier>>,
    /// Per-user rate limits.
    pub limits: Arc<Limits>,
    /// Most unfinished tasks one user may have.
    pub max_in_flight: u64,
    /// Key for end-to-end encrypted channels, when configured.
    pub master_key: Option<Arc<MasterKey>>,
    /// Origins allowed to call the api from a browser (CORS).
    pub cors_origins: Vec<String>,
    /// The Pusher app whose secret signs subscriptions.
    pub pusher: Arc<AppCredentials>,
    /// Prefix for absolute URLs in responses (may be empty).
    pub public_url: String,
    /// Request body limit, for error messages.
    pub max_body_bytes: usize,
    /// Development mode (demo tokens and page), when on.
    pub dev: Option<Arc<dev::DevMode>>,
}

/// The whole service.
pub fn app(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let dev = match &state.dev {
        Some(dev) => dev::router(dev),
        None => Router::new(),
    };
    Router::new()
        .merge(dev)
        .merge(routes::inference::router())
        .merge(routes::tasks::router())
        .merge(routes::channel_auth::router())
        .merge(routes::models::router())
        .merge(routes::health::router())
        .fallback(|| async { error::AppError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(limit))
        .layer(cors(&state.cors_origins))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// CORS for browser apps on the configured origins (none: same-origin only).
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            // Laravel Echo adds these to /broadcasting/auth on pages with a CSRF meta tag.
            HeaderName::from_static("x-csrf-token"),
            HeaderName::from_static("x-socket-id"),
            HeaderName::from_static("x-requested-with"),
        ])
        .expose_headers([header::LOCATION, header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(600))
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then drains requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown).await
}
