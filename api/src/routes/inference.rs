//! `POST /v1/inference`: validate, record `queued`, publish with confirm, answer 202.
//!
//! A submit with an `Idempotency-Key` that names an earlier task answers that task. The
//! key stays *pending* until the publish is confirmed; a replay that finds it pending long
//! after the first request must have finished belongs to a request that died between
//! recording and publishing (an api replica killed mid-submit), and publishes the task
//! then, under its own id: a client that retries with its key never loses a task.
//! A publish whose confirm is lost keeps its record and is followed up (see
//! [`crate::publishing`]); the client gets a 503 that names the task.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use inferpush_protocol::catalogue::InputError;
use inferpush_protocol::channel::ChannelKind;
use inferpush_protocol::http::{Accepted, Problem, SubmitRequest};
use inferpush_protocol::lifecycle::TASKS_PATH;
use inferpush_protocol::{CancelAfter, InferenceChannel, Lane, TaskEnvelope, TaskId, TaskRecord, TaskStatus};
use inferpush_service::telemetry;
use inferpush_store::{Admission, Created, Idempotency};
use tracing::Instrument;

use crate::AppState;
use crate::auth::User;
use crate::body::Json;
use crate::error::AppError;
use crate::limits::UserSlot;
use crate::metrics;
use crate::openapi::PROBLEM_JSON;
use crate::publishing::{Intent, Submission};
use crate::queue::QueueError;
use crate::waiting::{self, Preferences};

/// How long a pending idempotency key is left to the request that took it before a replay
/// publishes its task: past the publish timeout and this margin, that request has
/// published, or removed the record, or died.
const REPUBLISH_PENDING_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route(TASKS_PATH, post(submit))
}

/// The caller's W3C `traceparent`, when it sent a valid one.
fn incoming_traceparent(headers: &HeaderMap) -> Option<String> {
    let given = headers.get("traceparent")?.to_str().ok()?;
    let valid = given.len() == 55 && given.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    valid.then(|| given.to_owned())
}

/// The span a submit's lines are logged in, and the `traceparent` its task travels with.
/// With trace export the span continues the caller's trace (or starts one) and the task
/// carries the span as its parent. Without, the task carries the caller's `traceparent`,
/// or a new one whose trace id is the task id, so a task can be found in logs by its id.
fn task_span(headers: &HeaderMap, task_id: TaskId) -> (tracing::Span, String) {
    let span = tracing::info_span!(
        "task",
        otel.name = "submit",
        otel.kind = "producer",
        task_id = %task_id,
        trace_id = tracing::field::Empty
    );
    let incoming = incoming_traceparent(headers);
    if let Some(incoming) = &incoming {
        telemetry::continue_trace(&span, incoming);
    }
    let traceparent = telemetry::traceparent_of(&span).or(incoming).unwrap_or_else(|| {
        let parent = &uuid::Uuid::new_v4().simple().to_string()[..16];
        format!("00-{}-{parent}-01", task_id.0.simple())
    });
    span.record("trace_id", telemetry::trace_id(&traceparent).unwrap_or_default());
    (span, traceparent)
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
    let mut body = Accepted::of(record, &state.public_url).delivered_by(record, &state.delivery.enabled);
    body.model_ready = state.serving.workers(&record.model).map(|workers| workers > 0);
    let location = HeaderValue::from_str(&body.status_url).map_err(|e| AppError::Internal(e.into()))?;
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], axum::Json(body)).into_response())
}

/// Submit a task: it is recorded `queued`, handed to RabbitMQ with a publisher confirm and
/// answered at once. Its events are pushed on the channel the answer names. With an
/// `Idempotency-Key`, a retry of the same request answers the same task.
#[utoipa::path(
    post,
    path = TASKS_PATH,
    tag = "tasks",
    security(("bearer" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "1–255 visible ASCII characters; a retry with the same key and body answers the first task"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context; the task's spans join this trace"),
        ("Cancel-After" = Option<String>, Header, description = "Not run if not started within this long (`30s`, `500ms`, `5m`, `1h30m` or seconds; 100 ms to 24 h): it ends `expired` and its message is dropped"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (or `wait`): hold the answer up to N seconds (at most INFERPUSH_MAX_WAIT) and answer 201 with the finished task if it is done by then; the push happens either way"),
    ),
    request_body = SubmitRequest,
    responses(
        (status = 201, description = "`Prefer: wait` and the task finished in time: the finished task", body = TaskRecord,
            headers(("Location" = String, description = "The task's status URL"), ("Preference-Applied" = String, description = "`wait=N`"))),
        (status = 202, description = "Accepted and queued (with `Prefer: wait`, not finished in time)", body = Accepted,
            headers(("Location" = String, description = "The task's status URL"), ("Preference-Applied" = Option<String>, description = "`wait=N`, when a wait was asked"))),
        (status = 400, description = "The body is not JSON, or the Idempotency-Key or Cancel-After is malformed", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "A request with this Idempotency-Key is still being accepted", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The body, the input or its result is over a limit", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "Not `Content-Type: application/json`", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "Unknown model, invalid input, or an Idempotency-Key reused for another request", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(crate) async fn submit(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    Json(request): Json<SubmitRequest>,
) -> Result<Response, AppError> {
    let model = metrics::model_label(&request.model);
    let began = tokio::time::Instant::now();
    let wait = wait_slot(&state, &user, &headers);
    let user_id = user.id.clone();
    let answer = match accept(state.clone(), user, headers.clone(), request).await {
        Ok((task_id, accepted)) => match wait {
            Some(slot) => finish_waiting(&state, &headers, began, &user_id, task_id, accepted, slot).await,
            None => Ok(accepted),
        },
        Err(error) => Err(error),
    };
    match &answer {
        Ok(_) => metrics::submit(model, "accepted"),
        Err(error) => metrics::submit(model, error.kind()),
    }
    answer
}

/// [`accept`], counted in the submit metrics under its model: for the routes that submit
/// a task on their caller's behalf (`/v1/embeddings`, `/v2/models/{name}/infer`).
pub(crate) async fn accept_counted(
    state: AppState,
    user: User,
    headers: HeaderMap,
    request: SubmitRequest,
) -> Result<(TaskId, Response), AppError> {
    let model = metrics::model_label(&request.model);
    let accepted = accept(state, user, headers, request).await;
    match &accepted {
        Ok(_) => metrics::submit(model, "accepted"),
        Err(error) => metrics::submit(model, error.kind()),
    }
    accepted
}

/// Validates, records and publishes; answers the task and its 202.
pub(crate) async fn accept(
    state: AppState,
    user: User,
    headers: HeaderMap,
    request: SubmitRequest,
) -> Result<(TaskId, Response), AppError> {
    let refused = |e: InputError| match e {
        InputError::TooLarge { .. } => AppError::InputTooLarge(e.to_string()),
        other => AppError::Unprocessable(other.to_string()),
    };
    state.catalogue.validate(&request.model, &request.input).map_err(refused)?;
    let entry = state.catalogue.find(&request.model).expect("validated above");
    state.prompts.check(entry, &request.input).map_err(refused)?;
    let idempotency = idempotency_key(&headers)?;
    let fingerprint = request.fingerprint();
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
    let delivery = match request.encrypted {
        true => request.delivery().sealed().map_err(AppError::Unprocessable)?,
        false => request.delivery(),
    };
    delivery
        .validate(&state.delivery.enabled, &state.delivery.webhook_targets)
        .map_err(AppError::Unprocessable)?;
    let admission = admission(&state, &request)?;
    let cancel_after = cancel_after(&headers, request.cancel_after)?;
    let now_ms = state.clock.now_ms();
    let slots = state.catalogue.find(&request.model).map_or(1, |entry| entry.slots(&request.input));
    let task = TaskEnvelope::new(user.id, request.model, request.input, channel, now_ms)
        .with_delivery(delivery)
        .with_deadline(cancel_after.map(|c| c.deadline_ms(now_ms)))
        .with_slots(slots);

    // Record `queued` first, so a worker that finishes quickly never races the record.
    let record = TaskRecord::queued(&task);
    let keyed = idempotency.as_deref().map(|key| Idempotency { key, request: &fingerprint });
    // Noted before the record exists, so that whatever happens to this replica from here
    // on, a sweep of any replica can finish publishing it (see `crate::publishing`).
    let intent = Intent::note(&state, &task, idempotency.as_deref()).await?;
    let created = state.store.create(&record, keyed, admission).await;
    if !matches!(created, Ok(Created::New { .. })) {
        intent.settle(&state);
    }
    let lane = match created? {
        Created::New { in_flight } if in_flight > state.fair_share => Lane::Bulk,
        Created::New { .. } => Lane::Main,
        Created::QuotaReached { held, retry_after_secs } => {
            return Err(AppError::TooManyRequests {
                detail: format!(
                    "result storage quota reached: your results kept for the result TTL come to about {held} \
                     of {} bytes (INFERPUSH_RESULT_QUOTA_BYTES); this task's would add about {}",
                    state.result_quota_bytes, admission.result_bytes
                ),
                seconds: retry_after_secs,
            });
        }
        Created::LimitReached => {
            return Err(AppError::TooManyRequests {
                detail: format!(
                    "you have too many unfinished tasks: this one would pass your {} in-flight slots (it \
                     takes {}: a task takes one, a generation one per {} tokens of its max_tokens); wait for \
                     some to finish",
                    state.max_in_flight,
                    slots,
                    inferpush_protocol::envelope::TOKENS_PER_SLOT
                ),
                seconds: 5,
            });
        }
        Created::Existing { same_request: false, .. } => {
            return Err(AppError::Unprocessable(
                "this Idempotency-Key was used for a different request; use a new key for a new task".into(),
            ));
        }
        Created::Existing { task_id, published, same_request: true } => {
            let (span, traceparent) = task_span(&headers, task_id);
            let replay = Replay { task_id, published, key: idempotency, traceparent };
            return Ok((task_id, replay.answer(&state, task).instrument(span).await?));
        }
    };
    let (span, traceparent) = task_span(&headers, task.task_id);
    let submission = Submission { traceparent, task, idempotency_key: idempotency, lane };
    let answer = publish_accepted(&state, &record, &submission).instrument(span).await;
    if !matches!(answer, Err(AppError::OutcomeUnknown { .. })) {
        // Confirmed, or refused and removed: settled. An unknown outcome stays noted
        // until its follow-up (or, if this replica dies, a sweep) settles it.
        intent.settle(&state);
    }
    Ok((record.task_id, answer?))
}

/// The task's allowed wait: the `Cancel-After` header or the `cancel_after` field (the
/// shorter, when both are given).
fn cancel_after(headers: &HeaderMap, field: Option<CancelAfter>) -> Result<Option<CancelAfter>, AppError> {
    let header = match headers.get("cancel-after") {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| AppError::BadRequest("Cancel-After is not text".into()))?;
            Some(
                text.parse::<CancelAfter>()
                    .map_err(|e| AppError::BadRequest(format!("Cancel-After: {e}")))?,
            )
        }
    };
    Ok(match (header, field) {
        (Some(a), Some(b)) => Some(if a.duration() <= b.duration() { a } else { b }),
        (one, other) => one.or(other),
    })
}

/// A slot to wait in when the request asks to wait (`Prefer: wait`) and its user holds
/// fewer than INFERPUSH_MAX_WAITS_PER_USER waits here; otherwise the submit answers 202 at
/// once (without `Preference-Applied`, as RFC 7240 has it for a preference not honoured).
fn wait_slot(state: &AppState, user: &User, headers: &HeaderMap) -> Option<UserSlot> {
    Preferences::of(headers, state.max_wait).wait?;
    let slot = state.limits.waits.open(&user.id);
    if slot.is_none() {
        metrics::rate_limited("wait");
        tracing::info!(user = user.id, "Prefer: wait not honoured: the user holds the most waits allowed");
    }
    slot
}

/// With `Prefer: wait`, the finished task as `201 Created` if it finishes in time, else the
/// 202 as it was; either way `Preference-Applied` says the wait was honoured. `_slot` is
/// held for as long as the wait lasts.
async fn finish_waiting(
    state: &AppState,
    headers: &HeaderMap,
    began: tokio::time::Instant,
    user_id: &str,
    task_id: TaskId,
    accepted: Response,
    _slot: UserSlot,
) -> Result<Response, AppError> {
    let Some(wait) = Preferences::of(headers, state.max_wait).wait else {
        return Ok(accepted);
    };
    let applied = HeaderValue::from_str(&format!("wait={}", wait.as_secs())).expect("a valid header");
    // Counted from the request's start, so the answer always comes before the request timeout.
    let deadline = began + wait;
    let mut answer = match waiting::until_final(state, user_id, task_id, deadline).await {
        Some(finished) => {
            let location = accepted.headers().get(header::LOCATION).cloned();
            let mut created = (StatusCode::CREATED, axum::Json(finished)).into_response();
            if let Some(location) = location {
                created.headers_mut().insert(header::LOCATION, location);
            }
            created
        }
        None => accepted,
    };
    answer.headers_mut().insert("preference-applied", applied);
    Ok(answer)
}

/// Publishes a recorded task and answers for it (in the task's span, so its log lines name
/// its trace).
async fn publish_accepted(
    state: &AppState,
    record: &TaskRecord,
    submission: &Submission,
) -> Result<Response, AppError> {
    match submission.publish(state).await {
        Ok(()) => {}
        Err(QueueError::Unconfirmed(_)) => return Err(outcome_unknown(state, record)),
        Err(error) => {
            // Nothing half-written: the record (and its idempotency key) go too.
            let key = submission.idempotency_key.as_deref();
            if let Err(cleanup) = state.store.remove(record, key).await {
                tracing::error!(%cleanup, task_id = %record.task_id, "could not remove the record of an unpublished task");
            }
            return Err(error.into());
        }
    }
    metrics::task_state(TaskStatus::Queued);
    tracing::info!(task_id = %record.task_id, user = record.user_id, model = record.model, "task queued");
    accepted(state, record)
}

fn outcome_unknown(state: &AppState, record: &TaskRecord) -> AppError {
    let status_url = Accepted::of(record, &state.public_url).status_url;
    AppError::OutcomeUnknown { task_id: record.task_id, status_url }
}

/// What the task may take of its user's allowances; a result larger than the whole quota
/// could never be accepted, so it is a 413 rather than a 429 to wait out.
fn admission(state: &AppState, request: &SubmitRequest) -> Result<Admission, AppError> {
    let entry = state.catalogue.find(&request.model).expect("validated above");
    let result_bytes = entry.result_bytes(&request.input);
    let quota = state.result_quota_bytes;
    if quota > 0 && result_bytes > quota {
        return Err(AppError::InputTooLarge(format!(
            "this task's result would take about {result_bytes} bytes, more than the whole result quota of {quota}"
        )));
    }
    Ok(Admission { max_in_flight: state.max_in_flight, result_bytes, result_quota: quota })
}

/// A submit whose idempotency key names an earlier task.
struct Replay {
    task_id: TaskId,
    published: bool,
    key: Option<String>,
    traceparent: String,
}

impl Replay {
    /// Answers the earlier task; publishes it first when the request that recorded it died
    /// before publishing. `task` is the replayed request, unrecorded.
    async fn answer(self, state: &AppState, task: TaskEnvelope) -> Result<Response, AppError> {
        let Some(existing) = state.store.get(&task.user_id, self.task_id).await? else {
            // Its record expired: all that is left to say is its id.
            return accepted(state, &TaskRecord { task_id: self.task_id, ..TaskRecord::queued(&task) });
        };
        if self.published || existing.status != TaskStatus::Queued {
            tracing::info!(task_id = %self.task_id, "idempotent replay of a submitted task");
            return accepted(state, &existing);
        }
        let age_ms = state.clock.now_ms().saturating_sub(existing.submitted_at_ms);
        let republish_after = state.publish_timeout.saturating_add(REPUBLISH_PENDING_MARGIN);
        if age_ms < republish_after.as_millis() as u64 {
            return Err(AppError::InProgress(
                "a request with this Idempotency-Key is still being accepted; retry shortly".into(),
            ));
        }
        let orphan = Submission {
            task: TaskEnvelope { task_id: self.task_id, submitted_at_ms: existing.submitted_at_ms, ..task },
            traceparent: self.traceparent,
            idempotency_key: self.key,
            lane: Lane::Main,
        };
        match orphan.publish(state).await {
            Ok(()) => {}
            Err(QueueError::Unconfirmed(_)) => return Err(outcome_unknown(state, &existing)),
            Err(error) => return Err(error.into()),
        }
        tracing::warn!(task_id = %self.task_id, "published a task whose first request died before publishing it");
        accepted(state, &existing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_keeps_a_valid_incoming_one_and_makes_one_otherwise() {
        let task = TaskId::new_v7();
        let mut headers = HeaderMap::new();
        let traceparent = |headers: &HeaderMap| task_span(headers, task).1;
        let made = traceparent(&headers);
        assert!(made.starts_with(&format!("00-{}-", task.0.simple())), "{made}");
        assert_eq!(made.len(), 55);
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", given.parse().unwrap());
        assert_eq!(traceparent(&headers), given);
        headers.insert("traceparent", "garbage".parse().unwrap());
        assert_ne!(traceparent(&headers), "garbage");
    }
}
