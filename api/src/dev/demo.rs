//! The demo page at `/`: `web-demo/public/` as it is on disk, and pusher-js's browser
//! build from `web-demo/node_modules` (installed from npm, pinned by the lockfile) at
//! `/vendor/pusher.min.js`. Files are read per request, so editing the page needs no rebuild.

use std::path::{Path, PathBuf};

use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

use crate::AppState;

/// pusher-js's browser build, inside the demo's folder.
pub const PUSHER_JS: &str = "node_modules/pusher-js/dist/web/pusher.min.js";

/// The files the page cannot work without, relative to the demo's folder.
pub fn required_files(web_demo_dir: &Path) -> [PathBuf; 2] {
    [web_demo_dir.join("public/index.html"), web_demo_dir.join(PUSHER_JS)]
}

/// The routes of this area.
pub fn router(web_demo_dir: &Path) -> Router<AppState> {
    let public = web_demo_dir.join("public");
    Router::new()
        .route_service("/", ServeFile::new(public.join("index.html")))
        .route_service("/vendor/pusher.min.js", ServeFile::new(web_demo_dir.join(PUSHER_JS)))
        .nest_service("/demo", ServeDir::new(public))
}
