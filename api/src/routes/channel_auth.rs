//! `POST /pusher/auth` and `POST /broadcasting/auth`: sign a subscription to one of
//! the caller's own channels, and refuse every other channel.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use inferpush_protocol::InferenceChannel;
use inferpush_protocol::channel::ChannelKind;
use inferpush_protocol::http::{ChannelAuthRequest, ChannelAuthResponse};

use crate::AppState;
use crate::auth::User;
use crate::body::FormOrJson;
use crate::error::AppError;

/// The routes of this area: pusher-js's default path and Laravel Echo's.
pub fn router() -> Router<AppState> {
    Router::new().route("/pusher/auth", post(authorize)).route("/broadcasting/auth", post(authorize))
}

async fn authorize(
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
