//! `POST /v1/inference`: validate, record `queued`, publish with confirm, answer 202.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use inferpush_protocol::channel::ChannelKind;
use inferpush_protocol::http::{Accepted, SubmitRequest};
use inferpush_protocol::lifecycle::TASKS_PATH;
use inferpush_protocol::{InferenceChannel, TaskEnvelope, TaskId, TaskRecord, catalogue};
use inferpush_store::Created;

use crate::AppState;
use crate::auth::User;
use crate::body::Json;
use crate::error::AppError;

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route(TASKS_PATH, post(submit))
}

/// A W3C `traceparent`: the caller's when it sent a valid one, else a new trace whose
/// id is the task id, so a task can be found in traces by its id.
fn traceparent(headers: &HeaderMap, task_id: TaskId) -> String {
    if let Some(given) = headers.get("traceparent").and_then(|v| v.to_str().ok())
        && given.len() == 55
        && given.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    {
        return given.to_owned();
    }
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{}-{span}-01", task_id.0.simple())
}

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().filter(|k| {
        !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic())
    });
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        AppError::BadRequest(format!(
            "Idempotency-Key must be 1–{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        ))
    })
}

fn accepted(state: &AppState, record: &TaskRecord) -> Result<Response, AppError> {
    let body = Accepted::of(record, &state.public_url);
    let location = HeaderValue::from_str(&body.status_url).map_err(|e| AppError::Internal(e.into()))?;
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], axum::Json(body)).into_response())
}

async fn submit(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    Json(request): Json<SubmitRequest>,
) -> Result<Response, AppError> {
    catalogue::validate(&request.model, &request.input)
        .map_err(|e| AppError::Unprocessable(e.to_string()))?;
    let idempotency = idempotency_key(&headers)?;
    state.limits.submit.check(&user.id)?;
    if request.encrypted && state.master_key.is_none() {
        return Err(AppError::Unprocessable(
            "`encrypted` needs end-to-end encryption enabled on the server (PUSHER_ENCRYPTION_MASTER_KEY)"
                .into(),
        ));
    }
    let kind = if request.encrypted { ChannelKind::PrivateEncrypted } else { ChannelKind::Private };
    let channel = InferenceChannel::new(kind, &user.id)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("user id cannot name a channel: {e}")))?;
    let task = TaskEnvelope::new(user.id, request.model, request.input, channel, state.clock.now_ms());

    // Record `queued` first, so a worker that finishes quickly never races the record.
    let record = TaskRecord::queued(&task);
    match state.store.create(&record, idempotency.as_deref(), state.max_in_flight).await? {
        Created::New => {}
        Created::LimitReached => {
            return Err(AppError::TooManyRequests {
                detail: format!(
                    "you already have {} unfinished tasks; wait for some to finish",
                    state.max_in_flight
                ),
                seconds: 5,
            });
        }
        Created::Existing(task_id) => {
            let existing = state.store.get(task_id).await?;
            let existing = existing.unwrap_or(TaskRecord { task_id, ..record });
            tracing::info!(task_id = %task_id, "idempotent replay of a submitted task");
            return accepted(&state, &existing);
        }
    }
    if let Err(error) = state.queue.publish(&task, &traceparent(&headers, task.task_id)).await {
        // Nothing half-written: the record (and its idempotency key) go too.
        if let Err(cleanup) = state.store.remove(&record, idempotency.as_deref()).await {
            tracing::error!(%cleanup, task_id = %task.task_id, "could not remove the record of an unpublished task");
        }
        return Err(error.into());
    }
    tracing::info!(task_id = %task.task_id, user = task.user_id, model = task.model, "task queued");
    accepted(&state, &record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_keeps_a_valid_incoming_one_and_makes_one_otherwise() {
        let task = TaskId::new_v7();
        let mut headers = HeaderMap::new();
        let made = traceparent(&headers, task);
        assert!(made.starts_with(&format!("00-{}-", task.0.simple())), "{made}");
        assert_eq!(made.len(), 55);
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", given.parse().unwrap());
        assert_eq!(traceparent(&headers, task), given);
        headers.insert("traceparent", "garbage".parse().unwrap());
        assert_ne!(traceparent(&headers, task), "garbage");
    }
}
