//! `POST /v1/chat/completions`: OpenAI's chat completions over a generation task. Like the
//! embeddings route it is a view onto an ordinary task (listed, pushed to every sink,
//! cancellable): the answer waits for the task (`chat.completion`), or with `stream: true`
//! streams `chat.completion.chunk` events as the worker writes the text, ending with
//! `data: [DONE]`. With `Prefer: respond-async` it answers 202 at once and the tokens are
//! pushed as `inference.delta` events.
//!
//! A streamed answer follows the text the worker records at every delta (the progress
//! store), woken by the task's events on this replica's live feed and otherwise polling at
//! the workers' delta pace: it needs no particular sink turned on, and a worker that dies
//! mid-answer is followed by the next attempt from where the text differs no more.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use inferpush_protocol::lifecycle::status_url;
use inferpush_protocol::openai::chat::{self, ChatRequest, ChatTask, Chunks};
use inferpush_protocol::{TaskId, TaskRecord, TaskStatus};
use inferpush_store::events::Live;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Caller, OpenAiError, Submitted, submit};
use crate::AppState;
use crate::auth::{CallerAs, User};
use crate::body::bytes_rejection;
use crate::limits::UserSlot;
use crate::waiting::{self, Preferences};

/// How often a streamed answer looks for more text when no event woke it.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A chat answer from a generation model, as OpenAI's API gives it; streamed with
/// `stream: true`.
#[utoipa::path(
    post,
    path = chat::CHAT_COMPLETIONS_PATH,
    tag = "openai",
    security(("bearer" = [])),
    params(
        ("Prefer" = Option<String>, Header, description = "`respond-async`: answer 202 with the task at once (the text is pushed as `inference.delta` events); `wait=N`: wait at most N seconds"),
        ("Idempotency-Key" = Option<String>, Header, description = "As on `POST /v1/inference`"),
    ),
    request_body = ChatRequest,
    responses(
        (status = 200, description = "`chat.completion`, or with `stream: true` server-sent `chat.completion.chunk` events ending with `data: [DONE]`",
            content((Object = "application/json"), (crate::routes::events::StreamedEvent = "text/event-stream")),
            headers(("Location" = String, description = "The task's status URL"), ("inferpush-task-id" = String, description = "The task's id"))),
        (status = 202, description = "`Prefer: respond-async`: accepted; the text is pushed", body = inferpush_protocol::http::Accepted),
        (status = 400, description = "An invalid request, an unsupported field (`n` other than 1, tools, images), or a prompt plus `max_tokens` over the context", body = inferpush_protocol::openai::ErrorResponse),
        (status = 401, description = "No valid API key or token", body = inferpush_protocol::openai::ErrorResponse),
        (status = 404, description = "Not a chat model of the catalogue", body = inferpush_protocol::openai::ErrorResponse),
        (status = 429, description = "Over a rate or in-flight limit", body = inferpush_protocol::openai::ErrorResponse),
        (status = 503, description = "The queue or the store is unavailable", body = inferpush_protocol::openai::ErrorResponse),
        (status = 504, description = "Not finished within the wait: the task is named, its result will be pushed and kept", body = inferpush_protocol::openai::ErrorResponse),
    ),
)]
pub(crate) async fn completions(
    State(state): State<AppState>,
    CallerAs(user, _): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let began = Instant::now();
    match answer(state, user, &headers, body, began).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(
    state: AppState,
    user: User,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    began: Instant,
) -> Result<Response, OpenAiError> {
    let preferences = Preferences::of(headers, state.max_wait);
    let slot = match preferences.respond_async {
        true => None,
        false => Some(waiting::hold_wait(
            &state,
            &user.id,
            "send `Prefer: respond-async` and take the text by push",
        )?),
    };
    let body = body.map_err(|e| bytes_rejection(e, state.max_body_bytes))?;
    let request: ChatRequest = serde_json::from_slice(&body).map_err(|e| {
        OpenAiError::invalid(None, format!("the body is not a valid chat completions request: {e}"))
    })?;
    let task = request.task(&state.catalogue)?;
    state.prompts.check(&task.model, &task.input).map_err(|e| {
        let mut error = OpenAiError::from(chat::request_error(&e));
        if e.to_string().contains("context") {
            error.detail.code = Some("context_length_exceeded".into());
        }
        error
    })?;
    if let Some(end_user) = &request.user {
        tracing::info!(user = user.id, end_user, "chat completion for an end user");
    }
    let user_id = user.id.clone();
    let task_id = match submit(&state, user, headers, &task.model.name, &task.input, preferences).await? {
        Submitted::Answered(accepted) => return Ok(accepted),
        Submitted::Waiting(task_id) => task_id,
    };
    let status_url = status_url(&state.public_url, task_id);
    let wait = preferences.wait.unwrap_or(state.max_wait);
    let created_s = state.clock.now_ms() / 1000;
    if task.stream {
        let mut response =
            stream(state, task, user_id, task_id, created_s, began + wait, slot).into_response();
        waiting::name_task(&mut response, &status_url, task_id);
        return Ok(response);
    }
    match waiting::until_final(&state, &user_id, task_id, began + wait).await {
        Some(record) if record.status == TaskStatus::Succeeded => {
            let output = record.output.unwrap_or(Value::Null);
            let body = chat::completion(task_id, &task.model.name, created_s, &output);
            let mut response = axum::Json(body).into_response();
            waiting::name_task(&mut response, &status_url, task_id);
            Ok(response)
        }
        Some(record) => Err(OpenAiError::task_failed(&record, status_url)),
        None => Err(OpenAiError::still_running(task_id, status_url, wait)),
    }
}

/// The streamed answer: chunks as the text grows, until the task is final or the wait is
/// over (then the stream ends without `[DONE]`, the task goes on and is pushed).
fn stream(
    state: AppState,
    task: ChatTask,
    user_id: String,
    task_id: TaskId,
    created_s: u64,
    deadline: Instant,
    slot: Option<UserSlot>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let (events, received) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let _slot = slot;
        let chunks = Chunks::new(task_id, &task.model.name, created_s);
        let send = |value: Value| Event::default().data(value.to_string());
        if events.send(send(chunks.role())).await.is_err() {
            return;
        }
        let mut sent = String::new();
        let mut live = state.delivery.live.subscribe();
        loop {
            let record = match state.store.get(&user_id, task_id).await {
                Ok(Some(record)) => record,
                Ok(None) | Err(_) => return,
            };
            let text = current_text(&state, &record).await;
            if let Some(more) = text.as_deref().and_then(|text| text.strip_prefix(sent.as_str()))
                && !more.is_empty()
            {
                if events.send(send(chunks.text(more))).await.is_err() {
                    return;
                }
                sent.push_str(more);
            }
            if record.status.is_final() {
                let output = record.output.clone().unwrap_or(Value::Null);
                let ended = match record.status {
                    TaskStatus::Succeeded | TaskStatus::Cancelled if record.output.is_some() => {
                        let mut last = vec![send(chunks.finish(&output))];
                        if task.include_usage {
                            last.push(send(chunks.usage(&output)));
                        }
                        last.push(Event::default().data("[DONE]"));
                        last
                    }
                    _ => {
                        let error = record
                            .error
                            .clone()
                            .map(|e| e.message)
                            .unwrap_or_else(|| "the task failed".into());
                        vec![
                            Event::default().data(
                                serde_json::json!({"error": {"message": error, "type": "server_error"}})
                                    .to_string(),
                            ),
                        ]
                    }
                };
                for event in ended {
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep((deadline - now).min(POLL_EVERY)) => {}
                () = woken_by(&mut live, task_id) => {}
                () = events.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|event| (Ok(event), received))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The text of `record` so far: its output's once final, else what its worker recorded.
async fn current_text(state: &AppState, record: &TaskRecord) -> Option<String> {
    if let Some(text) = record.output.as_ref().and_then(|output| output.get("text")).and_then(Value::as_str) {
        return Some(text.to_owned());
    }
    match state.progress.progress(record.task_id).await {
        Ok(progress) => progress.map(|p| p.text),
        Err(_) => None,
    }
}

/// Returns when an event of `task_id` passes on the live feed (or the feed had a gap).
async fn woken_by(live: &mut tokio::sync::broadcast::Receiver<Live>, task_id: TaskId) {
    loop {
        match live.recv().await {
            Ok(Live::Event(event)) if event.task_id == task_id => return,
            Ok(Live::Gap) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}
