//! KServe's Open Inference Protocol v2 for `tensor` models, as Triton and KServe serve it:
//! `GET /v2/models/{name}` (metadata: the inputs and outputs read from the graph),
//! `GET /v2/models/{name}/ready` (200 while a live worker serves it, else 400) and
//! `POST /v2/models/{name}/infer`, answered when done.
//!
//! An infer request is a task like any other: validated against the model's signature
//! before anything is queued (a tensor that does not match is a 400 naming it), recorded,
//! queued, pushed to the task's sinks and listed; the request waits for its result within
//! the same limit as `/v1/embeddings`, else it answers 504 naming the task. The same body
//! sent as the `input` of `POST /v1/inference` with the model's name is the async path.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use inferpush_protocol::catalogue::{Entry, InputError};
use inferpush_protocol::http::SubmitRequest;
use inferpush_protocol::kserve::{ErrorBody, InferRequest, InferResponse, MetadataTensor, ModelMetadata};
use inferpush_protocol::lifecycle::status_url;
use inferpush_protocol::{TaskId, TaskRecord, TaskStatus};
use inferpush_repository::Kind;
use tokio::time::Instant;

use crate::AppState;
use crate::auth::{CallerAs, User};
use crate::body::bytes_rejection;
use crate::error::AppError;
use crate::metrics;
use crate::routes::inference;
use crate::waiting::{self, Preferences};

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/models/{name}", get(metadata))
        .route("/v2/models/{name}/ready", get(ready))
        .route("/v2/models/{name}/infer", post(infer))
}

/// A tensor model's metadata: its version, and its inputs and outputs as its graph and
/// card give them (`-1`: a dynamic dimension).
#[utoipa::path(
    get,
    path = "/v2/models/{name}",
    tag = "kserve",
    params(("name" = String, Path, description = "A tensor model's name")),
    responses(
        (status = 200, description = "The model's metadata", body = ModelMetadata),
        (status = 404, description = "No tensor model of that name", body = ErrorBody),
    ),
)]
pub(crate) async fn metadata(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match tensor_model(&state, &name) {
        Ok(entry) => axum::Json(metadata_of(entry)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// Whether a live worker serves the model: 200, else 400 (the protocol's "a 4xx status
/// code indicates false"; tasks for it wait in its queue all the same).
#[utoipa::path(
    get,
    path = "/v2/models/{name}/ready",
    tag = "kserve",
    params(("name" = String, Path, description = "A tensor model's name")),
    responses(
        (status = 200, description = "A live worker serves it"),
        (status = 404, description = "No tensor model of that name", body = ErrorBody),
        (status = 400, description = "No live worker serves it now (tasks for it wait in its queue)"),
    ),
)]
pub(crate) async fn ready(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    if let Err(error) = tensor_model(&state, &name) {
        return error.into_response();
    }
    let workers = state.serving.refresh().await.and_then(|counts| counts.get(&name).copied()).unwrap_or(0);
    let status = if workers > 0 { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    (status, axum::Json(serde_json::json!({"name": name, "ready": workers > 0, "workers": workers})))
        .into_response()
}

/// Runs a tensor model on the request's tensors and answers its outputs, as a task like
/// any other (pushed and kept as well).
#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    tag = "kserve",
    security(("bearer" = [])),
    params(
        ("name" = String, Path, description = "A tensor model's name"),
        ("Prefer" = Option<String>, Header, description = "`wait=N`: wait at most N seconds (at most INFERPUSH_MAX_WAIT, the default)"),
        ("Idempotency-Key" = Option<String>, Header, description = "As on `POST /v1/inference`"),
    ),
    request_body = InferRequest,
    responses(
        (status = 200, description = "The outputs", body = InferResponse,
            headers(("Location" = String, description = "The task's status URL"), ("inferpush-task-id" = String, description = "The task's id"))),
        (status = 400, description = "A tensor that does not match the model (named), or a body that is not a v2 request", body = ErrorBody),
        (status = 401, description = "No valid API key or token", body = ErrorBody),
        (status = 404, description = "No tensor model of that name", body = ErrorBody),
        (status = 413, description = "The body or the input is over a limit", body = ErrorBody),
        (status = 429, description = "Over a rate or in-flight limit", body = ErrorBody),
        (status = 500, description = "The model failed on this input", body = ErrorBody),
        (status = 503, description = "The queue or the store is unavailable", body = ErrorBody),
        (status = 504, description = "Not finished within the wait: the task is named, its result will be pushed and kept", body = ErrorBody),
    ),
)]
pub(crate) async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CallerAs(user, _): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let began = Instant::now();
    match answer(&state, &name, user, &headers, body, began).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The caller, refused in the protocol's shape before the body is read.
type Caller = CallerAs<V2Error>;

async fn answer(
    state: &AppState,
    name: &str,
    user: User,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    began: Instant,
) -> Result<Response, V2Error> {
    let entry = tensor_model(state, name)?;
    let wait = Preferences::of(headers, state.max_wait).wait.unwrap_or(state.max_wait);
    let _slot =
        waiting::hold_wait(state, &user.id, "submit to POST /v1/inference and take the result by push")?;
    let body = body.map_err(|e| V2Error::from(bytes_rejection(e, state.max_body_bytes)))?;
    let input: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| V2Error::new(StatusCode::BAD_REQUEST, format!("the body is not JSON: {e}")))?;
    entry.validate(&input).map_err(|e| match e {
        InputError::TooLarge { .. } => V2Error::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        other => V2Error::new(StatusCode::BAD_REQUEST, other.to_string()),
    })?;
    let submit = SubmitRequest::new(entry.name.clone(), input);
    let user_id = user.id.clone();
    let (task_id, _) = inference::accept_counted(state.clone(), user, headers.clone(), submit).await?;
    let status_url = status_url(&state.public_url, task_id);
    match waiting::until_final(state, &user_id, task_id, began + wait).await {
        Some(record) => finished(&record, status_url),
        None => Err(V2Error::still_running(task_id, status_url, wait)),
    }
}

/// The `tensor` model called `name`, or a 404 saying what it is instead.
fn tensor_model<'a>(state: &'a AppState, name: &str) -> Result<&'a Entry, V2Error> {
    match state.catalogue.find(name) {
        Some(entry) if entry.kind == Kind::Tensor => Ok(entry),
        Some(entry) => Err(V2Error::new(
            StatusCode::NOT_FOUND,
            format!(
                "model `{name}` is a {} model, served through POST /v1/inference; the v2 routes serve tensor models",
                entry.kind.name()
            ),
        )),
        None => Err(V2Error::new(
            StatusCode::NOT_FOUND,
            format!("no model `{name}`; the tensor models are: {}", tensor_names(state)),
        )),
    }
}

fn tensor_names(state: &AppState) -> String {
    let names: Vec<&str> = state
        .catalogue
        .entries()
        .iter()
        .filter(|e| e.kind == Kind::Tensor)
        .map(|e| e.name.as_str())
        .collect();
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

fn metadata_of(entry: &Entry) -> ModelMetadata {
    let signature = entry.signature.clone().unwrap_or_default();
    let tensors = |tensors: Vec<inferpush_repository::TensorInfo>| {
        tensors
            .into_iter()
            .map(|t| MetadataTensor { name: t.name, datatype: t.datatype, shape: t.shape })
            .collect()
    };
    ModelMetadata {
        name: entry.name.clone(),
        versions: vec![entry.version.clone()],
        platform: "onnxruntime_onnx".into(),
        inputs: tensors(signature.inputs),
        outputs: tensors(signature.outputs),
    }
}

/// The answer for a final task: its outputs, or why there are none.
fn finished(record: &TaskRecord, status_url: String) -> Result<Response, V2Error> {
    if record.status == TaskStatus::Succeeded {
        let output = record.output.clone().unwrap_or_default();
        let body: InferResponse = serde_json::from_value(output).map_err(|e| {
            V2Error::from(AppError::Internal(anyhow::anyhow!(
                "task {} has no v2 response: {e}",
                record.task_id
            )))
        })?;
        let mut response = (StatusCode::OK, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Ok(location) = HeaderValue::from_str(&status_url) {
            headers.insert(header::LOCATION, location);
        }
        headers
            .insert("inferpush-task-id", HeaderValue::from_str(&record.task_id.to_string()).expect("a uuid"));
        return Ok(response);
    }
    let (code, message) = record
        .error
        .as_ref()
        .map_or(("failed", "the task failed".to_owned()), |e| (e.code.as_str(), e.message.clone()));
    let status = match code {
        "invalid_input" => StatusCode::BAD_REQUEST,
        "cancelled" => StatusCode::CONFLICT,
        "expired" => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut error = V2Error::new(status, format!("task {} {}: {message}", record.task_id, record.status));
    error.body.task_id = Some(record.task_id);
    error.body.status_url = Some(status_url);
    Err(error)
}

/// An error in the protocol's shape: `{"error": "..."}` (with the task, when one exists).
#[derive(Debug)]
pub struct V2Error {
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<String>,
}

impl V2Error {
    fn new(status: StatusCode, error: String) -> Self {
        Self { status, body: ErrorBody { error, task_id: None, status_url: None }, retry_after: None }
    }

    fn still_running(task_id: TaskId, status_url: String, waited: std::time::Duration) -> Self {
        let error = waiting::still_running(task_id, &status_url, waited);
        let body = ErrorBody { error, task_id: Some(task_id), status_url: Some(status_url) };
        Self { status: StatusCode::GATEWAY_TIMEOUT, body, retry_after: None }
    }
}

impl From<AppError> for V2Error {
    fn from(error: AppError) -> Self {
        let status = error.status();
        if matches!(error, AppError::Unauthorized(_) | AppError::Forbidden(_)) {
            metrics::auth_refused(status.as_u16());
        }
        let (task_id, status_url) = match &error {
            AppError::OutcomeUnknown { task_id, status_url } => (Some(*task_id), Some(status_url.clone())),
            _ => (None, None),
        };
        Self {
            status,
            retry_after: error.retry_after(),
            body: ErrorBody { error: error.public_detail(), task_id, status_url },
        }
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        let headers = response.headers_mut();
        if let Some(value) = self.retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(header::RETRY_AFTER, value);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
