//! The authenticated caller, as an extractor: a handler that takes a `User` cannot
//! forget to check credentials.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::AppState;
use crate::error::AppError;

/// A caller whose bearer credential we recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The id that names the user's channels and owns their tasks.
    pub id: String,
}

impl FromRequestParts<AppState> for User {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(AppError::Unauthorized("missing `Authorization: Bearer <api key>` header"))?;
        let value = header
            .to_str()
            .map_err(|_| AppError::Unauthorized("the Authorization header is not valid text"))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or(AppError::Unauthorized("expected `Authorization: Bearer <api key>`"))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(AppError::Unauthorized("expected `Authorization: Bearer <api key>`"));
        }
        let id = state.keys.user_for(token.trim()).ok_or(AppError::Unauthorized("unknown API key"))?;
        Ok(User { id: id.to_owned() })
    }
}
