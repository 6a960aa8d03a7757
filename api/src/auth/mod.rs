//! Who is calling: the authenticated caller as an extractor ([`User`]), so a handler that
//! takes a `User` cannot forget to check credentials. A bearer credential is a JWT
//! ([`jwt`], three dot-separated parts) or an API key ([`keys`]).

pub mod jwt;
pub mod keys;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::AppState;
use crate::dev::tokens::DEMO_USER_PREFIX;
use crate::error::AppError;
use jwt::looks_like_jwt;

/// A caller whose bearer credential we recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The id that names the user's channels and owns their tasks.
    pub id: String,
}

fn unauthorized(detail: &str) -> AppError {
    AppError::Unauthorized(detail.to_owned())
}

/// The caller, checked before the body is read, refused in the error shape `E` of the
/// route's protocol (OpenAI's, KServe's): a request without valid credentials is refused
/// at once, without buffering what it sends.
pub struct CallerAs<E>(pub User, pub std::marker::PhantomData<E>);

impl<E> FromRequestParts<AppState> for CallerAs<E>
where
    E: From<AppError> + axum::response::IntoResponse,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(User::from_request_parts(parts, state).await?, std::marker::PhantomData))
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing `Authorization: Bearer <api key or token>` header"))?;
        let value =
            header.to_str().map_err(|_| unauthorized("the Authorization header is not valid text"))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or_else(|| unauthorized("expected `Authorization: Bearer <api key or token>`"))?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(unauthorized("expected `Authorization: Bearer <api key or token>`"));
        }
        let key_user = || state.keys.user_for(token).map(|id| User { id: id.to_owned() });
        if looks_like_jwt(token) {
            // An API key may happen to have two dots: when no JWT key accepts it, it is
            // looked up as a key, and the JWT's refusal is reported only if that fails too.
            return verify_jwt(state, token)
                .map(|id| User { id })
                .or_else(|refusal| key_user().ok_or(refusal));
        }
        key_user().ok_or_else(|| unauthorized("unknown API key"))
    }
}

/// A JWT is checked against the configured key, then (in development mode) against the
/// demo tokens' key; when both refuse it, the configured key's reason is the one reported.
fn verify_jwt(state: &AppState, token: &str) -> Result<String, AppError> {
    let configured = state.jwt.as_ref().map(|jwt| jwt.verify(token));
    if let Some(Ok(id)) = &configured
        && state.dev.is_some()
        && id.starts_with(DEMO_USER_PREFIX)
    {
        return Err(unauthorized("in development mode, `demo-…` users are reserved for demo tokens"));
    }
    let verdicts = configured.into_iter().chain(state.dev.iter().map(|dev| dev.tokens.verify(token)));
    let mut first_error = None;
    for verdict in verdicts {
        match verdict {
            Ok(id) => return Ok(id),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(match first_error {
        Some(error) => AppError::Unauthorized(error.to_string()),
        None => unauthorized("this server does not accept JWTs"),
    })
}
