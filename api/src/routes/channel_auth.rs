//! `POST /pusher/auth` and `POST /broadcasting/auth`: sign a subscription to one of
//! the caller's own channels, and refuse every other channel.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use inferpush_protocol::InferenceChannel;
use inferpush_protocol::channel::ChannelKind;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::body::FormOrJson;
use crate::error::AppError;
use crate::user::User;

/// The routes of this area: pusher-js's default path and Laravel Echo's.
pub fn router() -> Router<AppState> {
    Router::new().route("/pusher/auth", post(authorize)).route("/broadcasting/auth", post(authorize))
}

/// What pusher-js and Laravel Echo send.
#[derive(Debug, Deserialize)]
pub struct AuthRequest {
    socket_id: String,
    channel_name: String,
}

/// What they expect back.
#[derive(Debug, Serialize)]
pub struct AuthResponse {
    auth: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shared_secret: Option<String>,
}

async fn authorize(
    State(state): State<AppState>,
    user: User,
    FormOrJson(request): FormOrJson<AuthRequest>,
) -> Result<Json<AuthResponse>, AppError> {
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
            Ok(Json(AuthResponse { auth, channel_data: None, shared_secret: None }))
        }
        ChannelKind::Presence => {
            let data = serde_json::json!({"user_id": user.id, "user_info": {"name": user.id}}).to_string();
            let auth = credentials
                .authorize_presence(&request.socket_id, &request.channel_name, &data)
                .map_err(invalid_socket)?;
            Ok(Json(AuthResponse { auth, channel_data: Some(data), shared_secret: None }))
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
            Ok(Json(AuthResponse { auth, channel_data: None, shared_secret }))
        }
    }
}
