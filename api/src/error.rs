//! One error type for every handler, answered as `application/problem+json` (RFC 9457).
//! The failures of the outside services are mapped here, once, so the same failure gives
//! the same status on every route: an unreachable store or queue is a 503 with
//! `Retry-After`, a corrupt record or a refused message a logged 500.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use inferpush_protocol::http::Problem;
use inferpush_store::StoreError;

use crate::queue::QueueError;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "2";

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the body is not valid JSON or form data.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no credentials, or credentials we do not know.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but this is not yours.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such thing (or not yours, which we do not reveal).
    #[error("{0}")]
    NotFound(String),
    /// 409: the request conflicts with the task's state (e.g. cancelling a running task).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is over the configured limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 413: the input is larger than its model takes.
    #[error("{0}")]
    InputTooLarge(String),
    /// 415: a content type we do not read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid (unknown model, bad input).
    #[error("{0}")]
    Unprocessable(String),
    /// 429: over a rate or in-flight limit; retry after `seconds`.
    #[error("{detail}")]
    TooManyRequests {
        /// What was limited and when to retry.
        detail: String,
        /// The `Retry-After` value.
        seconds: u64,
    },
    /// 409: an earlier request with the same `Idempotency-Key` is still being handled;
    /// retry after a second.
    #[error("{0}")]
    InProgress(String),
    /// 503: a service we depend on is unreachable; nothing was written.
    #[error("{0}")]
    Unavailable(String),
    /// 503: the broker did not confirm the task in time; it may be queued or not, and the
    /// api keeps trying to queue it.
    #[error(
        "the message broker did not confirm task {task_id} in time: it may be queued or not. The api keeps \
         trying to queue it (a task runs once, however many copies reach the queue); read its state at \
         status_url, or retry with the same Idempotency-Key to be answered this task"
    )]
    OutcomeUnknown {
        /// The task whose fate is unknown.
        task_id: inferpush_protocol::TaskId,
        /// Where its state can be read.
        status_url: String,
    },
    /// 500: a bug or an unexpected failure; logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for AppError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => {
                tracing::warn!(%error, "answering 503");
                AppError::Unavailable(
                    "the task store is unavailable; nothing was changed, retry later".into(),
                )
            }
            StoreError::Corrupt(_) => AppError::Internal(error.into()),
        }
    }
}

impl From<QueueError> for AppError {
    fn from(error: QueueError) -> Self {
        match error {
            QueueError::Unreachable(_) => {
                tracing::warn!(%error, "answering 503");
                AppError::Unavailable("the task queue is unavailable; nothing was queued, retry later".into())
            }
            QueueError::Unconfirmed(_) => {
                // Only a submit knows the task's id; here there is nothing more to say.
                tracing::warn!(%error, "answering 503");
                AppError::Unavailable("the task queue did not confirm in time; retry later".into())
            }
            QueueError::Refused(_) => AppError::Internal(error.into()),
        }
    }
}

impl AppError {
    /// The kind of error, as a metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::PayloadTooLarge(_) => "body_too_large",
            AppError::InputTooLarge(_) => "input_too_large",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::Unprocessable(_) => "invalid",
            AppError::TooManyRequests { .. } => "too_many_requests",
            AppError::InProgress(_) => "in_progress",
            AppError::Unavailable(_) => "unavailable",
            AppError::OutcomeUnknown { .. } => "unconfirmed",
            AppError::Internal(_) => "internal",
        }
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) | AppError::InProgress(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) | AppError::InputTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) | AppError::OutcomeUnknown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl AppError {
    /// The `Retry-After` value this error is answered with, if any.
    pub fn retry_after(&self) -> Option<String> {
        match self {
            AppError::TooManyRequests { seconds, .. } => Some(seconds.to_string()),
            AppError::Unavailable(_) | AppError::OutcomeUnknown { .. } => {
                Some(RETRY_AFTER_SECONDS.to_owned())
            }
            AppError::InProgress(_) => Some("1".to_owned()),
            _ => None,
        }
    }

    /// What the client is told: the message, except for an internal error, which is
    /// logged here and never shown.
    pub fn public_detail(&self) -> String {
        match self {
            AppError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal error");
                "an internal error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if matches!(self, AppError::Unauthorized(_) | AppError::Forbidden(_)) {
            crate::metrics::auth_refused(status.as_u16());
        }
        let retry_after = self.retry_after();
        let problem = Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: self.public_detail(),
            task_id: None,
            status_url: None,
        };
        let problem = match self {
            AppError::OutcomeUnknown { task_id, status_url } => {
                Problem { task_id: Some(task_id), status_url: Some(status_url), ..problem }
            }
            _ => problem,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outside_failure_has_one_status_wherever_it_happens() {
        let corrupt = StoreError::Corrupt(serde_json::from_str::<u8>("x").unwrap_err());
        assert_eq!(AppError::from(corrupt).status(), StatusCode::INTERNAL_SERVER_ERROR);
        let down = StoreError::Unavailable("connection refused".into());
        assert_eq!(AppError::from(down).status(), StatusCode::SERVICE_UNAVAILABLE);
        let unreachable = QueueError::Unreachable("connection refused".into());
        assert_eq!(AppError::from(unreachable).status(), StatusCode::SERVICE_UNAVAILABLE);
        let refused = QueueError::Refused("nack".into());
        assert_eq!(AppError::from(refused).status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
