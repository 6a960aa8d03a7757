//! `GET /v1/models`: the model repository's cards, and which of them a live worker serves.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use inferpush_protocol::http::{ModelInfo, ModelList};

use crate::AppState;

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/models", get(list))
}

/// Every model of the repository, with its kind, version, limits and the shape of its
/// input and output, and whether a live worker serves it (`ready`, `workers`). A task for
/// a model no live worker serves is still accepted: it waits in its durable queue until one
/// comes (the submit's answer says `model_ready: false`).
#[utoipa::path(get, path = "/v1/models", tag = "tasks", responses((status = 200, description = "The catalogue", body = ModelList)))]
pub(crate) async fn list(State(state): State<AppState>) -> axum::Json<ModelList> {
    let serving = state.serving.refresh().await.unwrap_or_default();
    let models = state
        .catalogue
        .entries()
        .iter()
        .map(|entry| ModelInfo::of(entry, serving.get(&entry.name).copied().unwrap_or(0)))
        .collect();
    axum::Json(ModelList::of(models))
}
