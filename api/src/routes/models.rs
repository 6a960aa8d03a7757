//! `GET /v1/models`: the catalogue.

use axum::Router;
use axum::routing::get;
use inferpush_protocol::catalogue::MODELS;
use inferpush_protocol::http::{ModelInfo, ModelList};

use crate::AppState;

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/models", get(list))
}

async fn list() -> axum::Json<ModelList> {
    axum::Json(ModelList { models: MODELS.iter().map(ModelInfo::from).collect() })
}
