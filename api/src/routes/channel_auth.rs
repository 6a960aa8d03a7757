//! `POST /pusher/auth` and `POST /broadcasting/auth`: sign a subscription to one of
//! the caller's own channels, and refuse every other channel.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use inferpush_protocol::InferenceChannel;
use inferpush_protocol::channel::ChannelKind;
use inferpush_protocol::http::{ChannelAuthRequest, ChannelAuthResponse, Problem};

use crate::AppState;
use crate::auth::User;
use crate::body::FormOrJson;
use crate::error::AppError;
use crate::openapi::PROBLEM_JSON;

/// The routes of this area: pusher-js's default path and Laravel Echo's.
pub fn router() -> Router<AppState> {
    Router::new().route("/pusher/auth", post(authorize)).route("/broadcasting/auth", post(authorize))
}

/// Sign a subscription to one of the caller's own channels: pusher-js's `authEndpoint`, and
/// Laravel Echo's at `/broadcasting/auth` (the document copies this operation there).
#[utoipa::path(
    post,
    path = "/pusher/auth",
    tag = "pusher",
    security(("bearer" = [])),
    request_body(content(
        (ChannelAuthRequest = "application/x-www-form-urlencoded"),
        (ChannelAuthRequest = "application/json"),
    )),
    responses(
        (status = 200, description = "The signed subscription", body = ChannelAuthResponse),
        (status = 400, description = "The body or the socket id is malformed", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Not one of the caller's channels, or encryption is off", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body is over the limit", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Neither form-encoded nor JSON", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(crate) async fn authorize(
    State(state): State<AppState>,
    user: User,
    FormOrJson(request): FormOrJson<ChannelAuthRequest>,
) -> Result<Json<ChannelAuthResponse>, AppError> {
    state.limits.auth.check(&user.id)?;
    let channel = InferenceChannel::parse(&request.channel_name)
        .map_err(|e| AppError::Forbidden(format!("cannot subscribe to `{}`: {e}", request.channel_name)))?;
    if !channel.is_owned_by(&user.id) {
        return Err(AppError::Forbidden(format!(
            "channel `{}` belongs to another user",
            request.channel_name
        )));
    }
    let invalid_socket = |e: inferpush_protocol::SignatureError| AppError::BadRequest(e.to_string());
    let credentials = &state.pusher;
    match channel.kind() {
        ChannelKind::Private => {
            let auth = credentials
                .authorize_private(&request.socket_id, &request.channel_name)
                .map_err(invalid_socket)?;
            Ok(Json(ChannelAuthResponse { auth, channel_data: None, shared_secret: None }))
        }
        ChannelKind::Presence => {
            let data = serde_json::json!({"user_id": user.id, "user_info": {"name": user.id}}).to_string();
            let auth = credentials
                .authorize_presence(&request.socket_id, &request.channel_name, &data)
                .map_err(invalid_socket)?;
            Ok(Json(ChannelAuthResponse { auth, channel_data: Some(data), shared_secret: None }))
        }
        ChannelKind::PrivateEncrypted => {
            let key = state.master_key.as_ref().ok_or_else(|| {
                AppError::Forbidden(
                    "encrypted channels are not enabled on this server (no encryption master key)".into(),
                )
            })?;
            let auth = credentials
                .authorize_private(&request.socket_id, &request.channel_name)
                .map_err(invalid_socket)?;
            let shared_secret = Some(key.shared_secret(&request.channel_name));
            Ok(Json(ChannelAuthResponse { auth, channel_data: None, shared_secret }))
        }
    }
}
