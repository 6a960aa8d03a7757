//! `POST /v1/embeddings`: OpenAI's embeddings API, so code written for OpenAI's SDKs or
//! text-embeddings-inference runs against inferpush by changing its base URL; and
//! `POST /v1/chat/completions` ([`chat`]) for the generation models.
//!
//! It is a view onto the same task as `POST /v1/inference`: validated, recorded, queued
//! and rate-limited the same way, run by the same workers, pushed to the same sinks,
//! listed by `GET /v1/inference` and cancellable. The request then waits for the result
//! (up to `INFERPUSH_MAX_WAIT`, or a shorter `Prefer: wait=N`) and answers it in OpenAI's
//! shape; past the wait it answers 504 naming the task, whose result is still pushed and
//! kept. With `Prefer: respond-async` it answers 202 at once, as `/v1/inference` does.
//! Every error has OpenAI's shape, so the SDKs raise their usual exceptions; answers that
//! a retry would turn into a second task say `x-should-retry: false`, which the SDKs obey.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use inferpush_protocol::http::{Accepted, SubmitRequest};
use inferpush_protocol::lifecycle::status_url;
use inferpush_protocol::openai::{
    EMBEDDINGS_PATH, EmbeddingsRequest, EmbeddingsResponse, EmbeddingsTask, ErrorDetail, ErrorResponse,
    RequestError,
};
use inferpush_protocol::{TaskId, TaskRecord, TaskStatus};
use tokio::time::Instant;

use crate::AppState;
use crate::auth::{CallerAs, User};
use crate::body::bytes_rejection;
use crate::error::AppError;
use crate::metrics;
use crate::routes::inference;
use crate::waiting::{self, Preferences};

pub mod chat;

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(EMBEDDINGS_PATH, post(embeddings))
        .route(inferpush_protocol::openai::chat::CHAT_COMPLETIONS_PATH, post(chat::completions))
}

/// Embeddings of one or more texts, as OpenAI's API answers them, computed by a task
/// like any other (it is listed, pushed and cancellable as one).
#[utoipa::path(
    post,
    path = EMBEDDINGS_PATH,
    tag = "openai",
    security(("bearer" = [])),
    params(
        ("Prefer" = Option<String>, Header, description = "`respond-async`: answer 202 with the task at once; `wait=N`: wait at most N seconds (at most INFERPUSH_MAX_WAIT, the default)"),
        ("Idempotency-Key" = Option<String>, Header, description = "As on `POST /v1/inference`"),
    ),
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "The embeddings", body = EmbeddingsResponse,
            headers(("Location" = String, description = "The task's status URL"), ("inferpush-task-id" = String, description = "The task's id"))),
        (status = 202, description = "`Prefer: respond-async`: accepted; the result is pushed", body = Accepted),
        (status = 400, description = "An invalid request", body = ErrorResponse),
        (status = 401, description = "No valid API key or token", body = ErrorResponse),
        (status = 404, description = "Not an embedding model of the catalogue", body = ErrorResponse),
        (status = 409, description = "The task was cancelled, or a request with this Idempotency-Key is still being accepted", body = ErrorResponse),
        (status = 413, description = "The body or the input is over a limit", body = ErrorResponse),
        (status = 422, description = "Token-id input, which is not supported", body = ErrorResponse),
        (status = 429, description = "Over a rate or in-flight limit", body = ErrorResponse),
        (status = 500, description = "The model failed on this input", body = ErrorResponse),
        (status = 503, description = "The queue or the store is unavailable", body = ErrorResponse),
        (status = 504, description = "Not finished within the wait: the task is named, its result will be pushed and kept", body = ErrorResponse),
    ),
)]
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    CallerAs(user, _): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let began = Instant::now();
    match answer(&state, user, &headers, body, began).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The caller, refused in OpenAI's shape before the body is read.
type Caller = CallerAs<OpenAiError>;

async fn answer(
    state: &AppState,
    user: User,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    began: Instant,
) -> Result<Response, OpenAiError> {
    let preferences = Preferences::of(headers, state.max_wait);
    // Held for as long as the request waits; none is needed to answer 202 at once.
    let _slot = match preferences.respond_async {
        true => None,
        false => Some(waiting::hold_wait(
            state,
            &user.id,
            "send `Prefer: respond-async` and take the result by push",
        )?),
    };
    let body = body.map_err(|e| bytes_rejection(e, state.max_body_bytes))?;
    let request: EmbeddingsRequest = serde_json::from_slice(&body).map_err(|e| {
        OpenAiError::invalid(None, format!("the body is not a valid embeddings request: {e}"))
    })?;
    let task = request.task(&state.catalogue)?;
    if let Some(end_user) = &request.user {
        tracing::info!(user = user.id, end_user, "embeddings for an end user");
    }
    let user_id = user.id.clone();
    let task_id = match submit(state, user, headers, &task.model.name, &task.input, preferences).await? {
        Submitted::Answered(accepted) => return Ok(accepted),
        Submitted::Waiting(task_id) => task_id,
    };
    let status_url = status_url(&state.public_url, task_id);
    let wait = preferences.wait.unwrap_or(state.max_wait);
    match waiting::until_final(state, &user_id, task_id, began + wait).await {
        Some(record) => finished(&task, &record, status_url),
        None => Err(OpenAiError::still_running(task_id, status_url, wait)),
    }
}

/// What became of a request's task once accepted.
enum Submitted {
    /// `Prefer: respond-async`: the 202, to answer as it is.
    Answered(Response),
    /// The caller waits for this task.
    Waiting(TaskId),
}

/// Accepts the task of an OpenAI-shaped request (validated, recorded, queued and counted
/// as on `/v1/inference`); with `Prefer: respond-async` its 202 is the answer.
async fn submit(
    state: &AppState,
    user: User,
    headers: &HeaderMap,
    model: &str,
    input: &serde_json::Value,
    preferences: Preferences,
) -> Result<Submitted, OpenAiError> {
    let submit = SubmitRequest::new(model.to_owned(), input.clone());
    let (task_id, mut accepted) =
        inference::accept_counted(state.clone(), user, headers.clone(), submit).await?;
    if preferences.respond_async {
        accepted.headers_mut().insert("preference-applied", HeaderValue::from_static("respond-async"));
        return Ok(Submitted::Answered(accepted));
    }
    Ok(Submitted::Waiting(task_id))
}

/// The answer for a final task: its embeddings, or why there are none.
fn finished(task: &EmbeddingsTask, record: &TaskRecord, status_url: String) -> Result<Response, OpenAiError> {
    if record.status != TaskStatus::Succeeded {
        return Err(OpenAiError::task_failed(record, status_url));
    }
    let output = record.output.as_ref().unwrap_or(&serde_json::Value::Null);
    let Some(body) = EmbeddingsResponse::of(&task.model.name, output, task.encoding) else {
        return Err(AppError::Internal(anyhow::anyhow!("task {} has no embeddings", record.task_id)).into());
    };
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    waiting::name_task(&mut response, &status_url, record.task_id);
    Ok(response)
}

/// An error in OpenAI's shape.
#[derive(Debug)]
pub struct OpenAiError {
    status: StatusCode,
    detail: Box<ErrorDetail>,
    retry_after: Option<String>,
    /// False when a retry would make a second task (the SDKs retry 409, 429 and 5xx).
    should_retry: bool,
}

impl OpenAiError {
    fn invalid(param: Option<&str>, message: String) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            detail: Box::new(ErrorDetail {
                message,
                kind: "invalid_request_error".into(),
                param: param.map(str::to_owned),
                code: None,
                task_id: None,
                status_url: None,
            }),
            retry_after: None,
            should_retry: false,
        }
    }

    /// A task that ended without a result, as OpenAI's error of the same kind.
    fn task_failed(record: &TaskRecord, status_url: String) -> Self {
        let (code, message) = record
            .error
            .as_ref()
            .map_or(("failed", "the task failed".to_owned()), |e| (e.code.as_str(), e.message.clone()));
        let message = format!("task {} {}: {message}", record.task_id, record.status);
        let (status, kind) = match code {
            "invalid_input" => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            "cancelled" => (StatusCode::CONFLICT, "invalid_request_error"),
            "expired" => (StatusCode::GATEWAY_TIMEOUT, "timeout_error"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        Self {
            status,
            detail: Box::new(ErrorDetail {
                message,
                kind: kind.into(),
                param: None,
                code: Some(code.into()),
                task_id: Some(record.task_id),
                status_url: Some(status_url),
            }),
            retry_after: None,
            should_retry: false,
        }
    }

    fn still_running(task_id: TaskId, status_url: String, waited: std::time::Duration) -> Self {
        let message = waiting::still_running(task_id, &status_url, waited);
        Self {
            status: StatusCode::GATEWAY_TIMEOUT,
            detail: Box::new(ErrorDetail {
                message,
                kind: "timeout_error".into(),
                param: None,
                code: Some("timeout".into()),
                task_id: Some(task_id),
                status_url: Some(status_url),
            }),
            retry_after: None,
            should_retry: false,
        }
    }
}

impl From<RequestError> for OpenAiError {
    fn from(error: RequestError) -> Self {
        let mut openai = Self::invalid(error.param, error.message);
        openai.status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
        openai.detail.code = error.code.map(str::to_owned);
        openai
    }
}

impl From<AppError> for OpenAiError {
    fn from(error: AppError) -> Self {
        let status = error.status();
        if matches!(error, AppError::Unauthorized(_) | AppError::Forbidden(_)) {
            metrics::auth_refused(status.as_u16());
        }
        let (kind, code) = match &error {
            AppError::Unauthorized(_) => ("authentication_error", Some("invalid_api_key")),
            AppError::Forbidden(_) => ("permission_error", None),
            AppError::NotFound(_) => ("invalid_request_error", Some("not_found")),
            AppError::TooManyRequests { .. } => ("rate_limit_error", Some("rate_limit_exceeded")),
            AppError::PayloadTooLarge(_) | AppError::InputTooLarge(_) => {
                ("invalid_request_error", Some("too_large"))
            }
            AppError::Unavailable(_) | AppError::OutcomeUnknown { .. } => {
                ("server_error", Some("unavailable"))
            }
            AppError::Internal(_) => ("server_error", None),
            _ => ("invalid_request_error", None),
        };
        // A retry after an unknown outcome, or while the same key is in progress, is the
        // client's to make with its Idempotency-Key, not the SDK's blind one.
        let should_retry = !matches!(error, AppError::OutcomeUnknown { .. } | AppError::InProgress(_));
        let (task_id, status_url) = match &error {
            AppError::OutcomeUnknown { task_id, status_url } => (Some(*task_id), Some(status_url.clone())),
            _ => (None, None),
        };
        Self {
            status,
            retry_after: error.retry_after(),
            detail: Box::new(ErrorDetail {
                message: error.public_detail(),
                kind: kind.into(),
                param: None,
                code: code.map(str::to_owned),
                task_id,
                status_url,
            }),
            should_retry,
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(ErrorResponse { error: *self.detail })).into_response();
        let headers = response.headers_mut();
        if let Some(value) = self.retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(header::RETRY_AFTER, value);
        }
        if !self.should_retry {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
