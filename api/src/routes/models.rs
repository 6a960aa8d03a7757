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

/// The models this server runs, with the shape of their input and output.
#[utoipa::path(get, path = "/v1/models", tag = "tasks", responses((status = 200, description = "The catalogue", body = ModelList)))]
pub(crate) async fn list() -> axum::Json<ModelList> {
    axum::Json(ModelList { models: MODELS.iter().map(ModelInfo::from).collect() })
}
