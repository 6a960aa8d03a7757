//! Development mode's extras, absent unless `INFERPUSH_DEV_MODE` is on: short-lived
//! tokens for the demo page's visitors ([`tokens`]) and the demo page itself ([`demo`]).

pub mod demo;
pub mod tokens;

use std::path::PathBuf;

use axum::Router;

use crate::AppState;
pub use tokens::DevTokens;

/// What the Pusher client of a page served in development mode needs to know.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PusherPublic {
    /// The app key (public: it is in every WebSocket URL).
    pub key: String,
    /// Where the push server takes WebSocket connections.
    pub ws_host: String,
    /// The push server's port.
    pub ws_port: u16,
    /// Whether to use `wss://`.
    pub force_tls: bool,
}

/// Development mode's state.
pub struct DevMode {
    /// Issues and verifies visitors' tokens.
    pub tokens: DevTokens,
    /// The `web-demo/` folder: `public/` and its `node_modules/`.
    pub web_demo_dir: PathBuf,
    /// The push server, as the page reaches it.
    pub pusher: PusherPublic,
}

/// The routes of development mode: the token endpoint and the demo page.
pub fn router(dev: &DevMode) -> Router<AppState> {
    Router::new().merge(tokens::router()).merge(demo::router(&dev.web_demo_dir))
}
