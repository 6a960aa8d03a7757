//! `POST /v1/inference`: validate, publish with confirm, answer 202.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use inferpush_protocol::{EventName, InferenceChannel, TaskEnvelope, TaskId, catalogue};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::body::Json;
use crate::broker::BrokerError;
use crate::error::AppError;
use crate::user::User;

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/inference", post(submit))
}

/// What a client submits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// Catalogue name of the model.
    pub model: String,
    /// The model's input; its shape depends on the model.
    pub input: serde_json::Value,
}

/// Event names a client should listen for.
#[derive(Debug, Serialize)]
pub struct EventNames {
    completed: &'static str,
    failed: &'static str,
}

/// The 202 body.
#[derive(Debug, Serialize)]
pub struct Accepted {
    task_id: TaskId,
    status: &'static str,
    channel: String,
    events: EventNames,
    status_url: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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

async fn submit(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    Json(request): Json<SubmitRequest>,
) -> Result<Response, AppError> {
    catalogue::validate(&request.model, &request.input)
        .map_err(|e| AppError::Unprocessable(e.to_string()))?;
    let channel = InferenceChannel::private(&user.id)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("user id cannot name a channel: {e}")))?;
    let task = TaskEnvelope {
        task_id: TaskId::new_v7(),
        user_id: user.id,
        model: request.model,
        input: request.input,
        channel: channel.to_string(),
        submitted_at_ms: now_ms(),
    };
    state
        .broker
        .publish(&task, &traceparent(&headers, task.task_id))
        .await
        .map_err(|e| match e {
            BrokerError::Unreachable(_) => {
                tracing::warn!(error = %e, "task not accepted: broker unreachable");
                AppError::Unavailable(
                    "the task queue is unavailable; nothing was queued, retry later".into(),
                )
            }
            BrokerError::Refused(_) => AppError::Internal(e.into()),
        })?;
    tracing::info!(task_id = %task.task_id, user = task.user_id, model = task.model, "task queued");

    let status_url = format!("{}/v1/inference/{}", state.public_url, task.task_id);
    let location = HeaderValue::from_str(&status_url).map_err(|e| AppError::Internal(e.into()))?;
    let body = Accepted {
        task_id: task.task_id,
        status: "queued",
        channel: task.channel,
        events: EventNames {
            completed: EventName::COMPLETED,
            failed: EventName::FAILED,
        },
        status_url,
    };
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        axum::Json(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_keeps_a_valid_incoming_one_and_makes_one_otherwise() {
        let task = TaskId::new_v7();
        let mut headers = HeaderMap::new();
        let made = traceparent(&headers, task);
        assert!(
            made.starts_with(&format!("00-{}-", task.0.simple())),
            "{made}"
        );
        assert_eq!(made.len(), 55);
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", given.parse().unwrap());
        assert_eq!(traceparent(&headers, task), given);
        headers.insert("traceparent", "garbage".parse().unwrap());
        assert_ne!(traceparent(&headers, task), "garbage");
    }
}
