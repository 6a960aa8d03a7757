//! `POST /dev/token`: signs a visitor in as a demo user with a short-lived HS256 JWT.
//! The key is random per process, so a token never outlives the api that issued it,
//! unless replicas behind one balancer are given a shared one
//! (`INFERPUSH_DEV_TOKEN_SECRET`); the tokens are verified by the same code as configured
//! JWTs, with their own issuer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::post;
use axum::{Json as JsonResponse, Router};
use inferpush_protocol::channel::InferenceChannel;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::{Deserialize, Serialize};

use super::PusherPublic;
use crate::AppState;
use crate::auth::jwt::{JwtError, JwtVerifier};
use crate::body::Json;
use crate::error::AppError;

/// The `iss` and `aud` of development tokens.
const ISSUER: &str = "inferpush-dev";

/// Demo users' ids start with this. With a JWT issuer configured, demo tokens are minted
/// only for such ids, and the issuer's own tokens for such ids are refused in development
/// mode, so the two never name the same user.
pub const DEMO_USER_PREFIX: &str = "demo-";

/// Issues and verifies development tokens.
pub struct DevTokens {
    key: EncodingKey,
    verifier: JwtVerifier,
    lifetime: Duration,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    iss: &'static str,
    aud: &'static str,
    iat: u64,
    exp: u64,
}

impl DevTokens {
    /// Tokens signed with a fresh random key, valid for `lifetime`.
    pub fn new(lifetime: Duration) -> Self {
        let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        Self::with_secret(&secret, lifetime)
    }

    /// Tokens signed with `secret`, which api replicas behind one balancer share.
    pub fn with_secret(secret: &str, lifetime: Duration) -> Self {
        let verifier = JwtVerifier::from_config(Some(secret), None, Some(ISSUER), Some(ISSUER))
            .expect("an HS256 secret alone is a valid configuration")
            .expect("a secret was given");
        Self { key: EncodingKey::from_secret(secret.as_bytes()), verifier, lifetime }
    }

    /// A token naming `user_id`, valid from now for the configured lifetime.
    pub fn issue(&self, user_id: &str) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let claims =
            Claims { sub: user_id, iss: ISSUER, aud: ISSUER, iat: now, exp: now + self.lifetime.as_secs() };
        encode(&Header::new(Algorithm::HS256), &claims, &self.key).expect("HS256 encoding cannot fail")
    }

    /// The user a token of ours names.
    pub fn verify(&self, token: &str) -> Result<String, JwtError> {
        self.verifier.verify(token)
    }

    /// How long a token lives.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/dev/token", post(issue))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    /// The demo user to be; a new `demo-…` user when absent.
    #[serde(default)]
    user_id: Option<String>,
}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    token_type: &'static str,
    expires_in: u64,
    user_id: String,
    channel: String,
    pusher: PusherPublic,
}

async fn issue(
    State(state): State<AppState>,
    Json(request): Json<TokenRequest>,
) -> Result<JsonResponse<TokenResponse>, AppError> {
    let dev = state.dev.as_ref().ok_or_else(|| AppError::NotFound("no such endpoint".into()))?;
    // A demo token never speaks for a real user: not one with a configured API key, and,
    // when a JWT issuer is configured (its users could have any name), nobody chosen by
    // the caller at all.
    if let Some(wanted) = &request.user_id {
        if state.keys.has_configured_user(wanted) {
            return Err(AppError::Forbidden(format!(
                "`{wanted}` is a user with a configured API key; demo tokens are only for demo users"
            )));
        }
        if state.jwt.is_some() && !wanted.starts_with(DEMO_USER_PREFIX) {
            return Err(AppError::Forbidden(format!(
                "users come from the configured JWT issuer here; demo tokens are only for `{DEMO_USER_PREFIX}…` users"
            )));
        }
    }
    let user_id = request
        .user_id
        .unwrap_or_else(|| format!("{DEMO_USER_PREFIX}{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let channel = InferenceChannel::private(&user_id)
        .map_err(|e| AppError::Unprocessable(format!("`user_id` cannot name a channel: {e}")))?;
    Ok(JsonResponse(TokenResponse {
        token: dev.tokens.issue(&user_id),
        token_type: "Bearer",
        expires_in: dev.tokens.lifetime().as_secs(),
        channel: channel.to_string(),
        user_id,
        pusher: dev.pusher.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_token_names_its_user_and_another_processs_token_does_not_pass() {
        let tokens = DevTokens::new(Duration::from_secs(60));
        assert_eq!(tokens.verify(&tokens.issue("demo-1")), Ok("demo-1".into()));
        let other = DevTokens::new(Duration::from_secs(60));
        assert_eq!(tokens.verify(&other.issue("demo-1")), Err(JwtError::BadSignature));
        let (a, b) = (
            DevTokens::with_secret("shared", Duration::from_secs(60)),
            DevTokens::with_secret("shared", Duration::from_secs(60)),
        );
        assert_eq!(b.verify(&a.issue("demo-2")), Ok("demo-2".into()), "replicas with one secret agree");
    }
}
