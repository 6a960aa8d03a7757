//! The inferpush HTTP gateway: accepts inference tasks, hands them to RabbitMQ with
//! publisher confirms, records their state in Redis, serves that state to their owners,
//! and signs Pusher channel subscriptions for them.

pub mod auth;
pub mod body;
pub mod config;
pub mod delivery;
pub mod dev;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod prompts;
pub mod publishing;
pub mod queue;
pub mod routes;
pub mod server;
pub mod serving;
pub mod state;
pub mod waiting;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub use server::ServerLimits;
pub use state::AppState;

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
        .merge(routes::delivery::router())
        .merge(routes::events::router())
        .merge(routes::openai::router())
        .merge(routes::kserve::router())
        .merge(routes::health::router())
        .merge(openapi::router())
        .fallback(|| async { error::AppError::NotFound("no such endpoint".into()) })
        .layer(DefaultBodyLimit::max(limit))
        .layer(cors(&state.cors_origins))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// CORS for browser apps on the configured origins (none: same-origin only; `*`: any,
/// which is safe here because credentials are bearer tokens, never cookies).
fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("prefer"),
            // EventSource clients resuming a stream.
            HeaderName::from_static("last-event-id"),
            // Laravel Echo adds these to /broadcasting/auth on pages with a CSRF meta tag.
            HeaderName::from_static("x-csrf-token"),
            HeaderName::from_static("x-socket-id"),
            HeaderName::from_static("x-requested-with"),
        ])
        .expose_headers([
            header::LOCATION,
            header::RETRY_AFTER,
            HeaderName::from_static("preference-applied"),
            HeaderName::from_static("inferpush-task-id"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// Serves `app(state)` on `listener` within `limits` until `shutdown` resolves, then
/// drains requests; open event streams end then, so their clients resume elsewhere with
/// `Last-Event-ID`. Meanwhile the rate limits forget idle users once a minute.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let rate_limits = state.limits.clone();
    let pruning = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            rate_limits.shrink();
        }
    });
    let sweeping = tokio::spawn(publishing::sweep_forever(state.clone()));
    let live = state.delivery.live.clone();
    let shutdown = async move {
        shutdown.await;
        live.close();
    };
    let served = server::serve_bounded(listener, app(state), limits, shutdown).await;
    pruning.abort();
    sweeping.abort();
    served
}
