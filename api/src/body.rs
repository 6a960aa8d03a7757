//! Request extractors (bodies, query strings, path segments) that answer malformed input
//! with problem+json, never with axum's plain-text rejections.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::AppError;

/// `axum::Json`, with rejections mapped onto [`AppError`].
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection, state.max_body_bytes)),
        }
    }
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> AppError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            AppError::UnsupportedMediaType("expected `Content-Type: application/json`".into())
        }
        JsonRejection::JsonSyntaxError(error) => {
            AppError::BadRequest(format!("the body is not valid JSON: {}", error.body_text()))
        }
        JsonRejection::JsonDataError(error) => AppError::Unprocessable(error.body_text()),
        JsonRejection::BytesRejection(error) => bytes_rejection(error, limit),
        other => AppError::BadRequest(other.body_text()),
    }
}

/// A body that could not be read: over `limit`, or broken off.
pub fn bytes_rejection(rejection: BytesRejection, limit: usize) -> AppError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        AppError::PayloadTooLarge(limit)
    } else {
        AppError::BadRequest(rejection.body_text())
    }
}

/// A body that may come form-encoded (pusher-js, Laravel Echo) or as JSON.
pub struct FormOrJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for FormOrJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let is_json = content_type.starts_with("application/json");
        let is_form = content_type.starts_with("application/x-www-form-urlencoded");
        if !is_json && !is_form {
            return Err(AppError::UnsupportedMediaType(
                "expected `application/x-www-form-urlencoded` or `application/json`".into(),
            ));
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| bytes_rejection(e, state.max_body_bytes))?;
        let parsed = if is_json {
            serde_json::from_slice(&bytes).map_err(|e| AppError::BadRequest(format!("invalid JSON: {e}")))
        } else {
            serde_urlencoded::from_bytes(&bytes)
                .map_err(|e| AppError::BadRequest(format!("invalid form: {e}")))
        };
        parsed.map(FormOrJson)
    }
}

/// `axum::extract::Query`: a query string that does not decode is a 422 naming the field.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts<AppState> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(AppError::Unprocessable(rejection.body_text())),
        }
    }
}

/// `axum::extract::Path`: a path segment that does not decode (not UTF-8) is a 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for Path<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(AppError::BadRequest(rejection.body_text())),
        }
    }
}
