//! Server-sent events: `GET /v1/events` streams every event of the caller's tasks,
//! `GET /v1/inference/{id}/events` those of one task (ending after its final event). Each
//! event carries its id in the caller's log; a client that reconnects with
//! `Last-Event-ID` first gets what it missed, from the log, then the live stream: nothing
//! lost and nothing twice, whichever replica it reaches.
//!
//! A stream subscribes to its replica's live feed before it reads the log, and sends only
//! events after the last one sent, so an event in both arrives once. When the feed had a
//! gap (Redis reconnected, or the stream fell behind) it reads the log again from there.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use inferpush_protocol::http::Problem;
use inferpush_protocol::{SinkKind, TaskId, TaskRecord};
use inferpush_store::events::{EventId, Live, LoggedEvent, Start};
use tokio::sync::broadcast;

use crate::AppState;
use crate::auth::User;
use crate::body::Path;
use crate::error::AppError;
use crate::metrics;
use crate::openapi::PROBLEM_JSON;
use crate::server::CloseConnection;

mod outbox;

use outbox::{Outbox, Refused, STREAM_BUFFER_BYTES};

/// One event of a stream, as its fields arrive (the OpenAPI document's description of
/// `text/event-stream`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct StreamedEvent {
    /// Its id in the caller's log (`<ms>-<seq>`), to send back as `Last-Event-ID`. Absent
    /// only on a finished task's final event rebuilt from its record.
    #[schema(pattern = "^[0-9]+-[0-9]+$")]
    id: Option<String>,
    /// `inference.started`, `inference.completed` or `inference.failed`.
    #[schema(pattern = "^inference\\.(started|completed|failed)$")]
    event: String,
    /// The event's data: an `InferenceEvent` as JSON.
    data: String,
}

/// Every event of the caller's tasks.
pub const EVENTS_PATH: &str = "/v1/events";
/// The events of one task.
pub const TASK_EVENTS_ROUTE: &str = "/v1/inference/{task_id}/events";
/// Events read from the log per call (and held at once while replaying): with events of
/// up to ~100 KiB, at most ~1.6 MiB per stream.
const PAGE: usize = 16;
/// How long a replay waits for a client to make room before cutting it off.
const STALL_PATIENCE: Duration = Duration::from_secs(15);
/// How far the api's clock may be ahead of Redis's before a task's first events would be
/// missed by its stream.
const CLOCK_SKEW_MARGIN_MS: u64 = 60_000;
/// How long a client waits before reconnecting (the SSE `retry` field).
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route(EVENTS_PATH, get(user_events)).route(TASK_EVENTS_ROUTE, get(task_events))
}

/// The `Last-Event-ID` a reconnecting client sends. An id can only name an event of the
/// past: one later than now (beyond the clock-skew margin), such as Redis's largest id,
/// which it refuses to read after, is a 400 rather than a read that fails like an outage.
fn last_event_id(headers: &HeaderMap, now_ms: u64) -> Result<Option<EventId>, AppError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(None) };
    let text = value.to_str().map_err(|_| AppError::BadRequest("Last-Event-ID is not text".into()))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let id: EventId = text.trim().parse().map_err(|e| AppError::BadRequest(format!("Last-Event-ID: {e}")))?;
    if id.ms > now_ms.saturating_add(CLOCK_SKEW_MARGIN_MS) {
        return Err(AppError::BadRequest(format!(
            "Last-Event-ID {id} names no event: it is later than now; send the id of the last event received"
        )));
    }
    Ok(Some(id))
}

fn ensure_on(state: &AppState) -> Result<(), AppError> {
    if state.delivery.is_on(SinkKind::Sse) {
        Ok(())
    } else {
        Err(AppError::NotFound(
            "server-sent events are not turned on here (INFERPUSH_SINKS has no `sse`)".into(),
        ))
    }
}

/// Every event of the caller's tasks as they happen, as `text/event-stream`. With
/// `Last-Event-ID`, the events after it first.
#[utoipa::path(
    get,
    path = EVENTS_PATH,
    tag = "events",
    security(("bearer" = [])),
    params(("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received; the events after it are sent first")),
    responses(
        (status = 200, description = "A stream of `inference.started`, `inference.completed` and `inference.failed` events, each `data` an InferenceEvent", content_type = "text/event-stream", body = StreamedEvent),
        (status = 400, description = "A malformed Last-Event-ID, or one later than now", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Server-sent events are not turned on", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(crate) async fn user_events(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
    close: Option<Extension<CloseConnection>>,
) -> Result<Response, AppError> {
    ensure_on(&state)?;
    let follow = Follow { user_id: user.id, task: None, close: close.map(|Extension(close)| close) };
    let cursor = match last_event_id(&headers, state.clock.now_ms())? {
        Some(id) => Cursor::After(id),
        None => Cursor::Fresh(state.clock.now_ms()),
    };
    follow.stream(state, cursor, None).await
}

/// The events of one of the caller's tasks, from its first, ending after its final one.
/// With `Last-Event-ID`, the events after it.
#[utoipa::path(
    get,
    path = TASK_EVENTS_ROUTE,
    tag = "events",
    security(("bearer" = [])),
    params(
        ("task_id" = String, Path, description = "The task's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received; the events after it are sent"),
    ),
    responses(
        (status = 200, description = "The task's events; the stream ends after `inference.completed` or `inference.failed`", content_type = "text/event-stream", body = StreamedEvent),
        (status = 204, description = "The task is finished and the client had its final event (a reconnect after the end): EventSource stops"),
        (status = 400, description = "A malformed Last-Event-ID, or one later than now", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such task (or not the caller's), or server-sent events are not turned on", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The task is unfinished and its `sinks` leave out `sse`: its events never reach this stream (a finished one gets its final event at once)", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(crate) async fn task_events(
    State(state): State<AppState>,
    user: User,
    Path(task_id): Path<String>,
    headers: HeaderMap,
    close: Option<Extension<CloseConnection>>,
) -> Result<Response, AppError> {
    ensure_on(&state)?;
    let record = super::tasks::own_task(&state, &user, &task_id).await?;
    let sinks = record.delivery.sinks(&state.delivery.enabled);
    if !sinks.contains(&SinkKind::Sse) && !record.status.is_final() {
        // Its events never reach the log: a stream would wait for nothing.
        let names: Vec<&str> = sinks.iter().map(|sink| sink.name()).collect();
        return Err(AppError::Conflict(format!(
            "task {} sends its events to {} only (its `sinks`), not to server-sent events; follow it there, \
             or read its state at GET /v1/inference/{}",
            record.task_id,
            if names.is_empty() { "no sink".to_owned() } else { names.join(", ") },
            record.task_id
        )));
    }
    let cursor = match last_event_id(&headers, state.clock.now_ms())? {
        Some(id) => Cursor::After(id),
        // The log's ids are Redis's clock, the submission time the api's: a margin for skew.
        None => Cursor::Since(record.submitted_at_ms.saturating_sub(CLOCK_SKEW_MARGIN_MS)),
    };
    let close = close.map(|Extension(close)| close);
    let follow = Follow { user_id: user.id, task: Some(record.task_id), close };
    follow.stream(state, cursor, Some(record)).await
}

/// Where a stream stands in its log.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    /// Opened without an id: live events only, and after a gap the log from this moment.
    Fresh(u64),
    /// From this millisecond (a task's events from its submission).
    Since(u64),
    /// After this event, the last one sent.
    After(EventId),
}

impl Cursor {
    fn start(self) -> Start {
        match self {
            Cursor::Fresh(ms) | Cursor::Since(ms) => Start::Since(ms),
            Cursor::After(id) => Start::After(id),
        }
    }

    /// Whether a live event is new to this stream.
    fn wants(self, id: EventId) -> bool {
        match self {
            Cursor::Fresh(_) => true,
            Cursor::Since(ms) => id.ms >= ms,
            Cursor::After(last) => id > last,
        }
    }
}

/// Whose events a stream carries.
struct Follow {
    user_id: String,
    task: Option<TaskId>,
    /// Closes the client's connection, when the stream is cut off.
    close: Option<CloseConnection>,
}

impl Follow {
    fn carries(&self, event: &LoggedEvent) -> bool {
        event.user_id == self.user_id && self.task.is_none_or(|task| task == event.task_id)
    }

    /// Subscribes, replays from `cursor` (failing with 503 when the log cannot be read
    /// now), then follows the live feed in the background.
    async fn stream(
        self,
        state: AppState,
        mut cursor: Cursor,
        record: Option<TaskRecord>,
    ) -> Result<Response, AppError> {
        let slot = state.delivery.streams.open(&self.user_id).ok_or_else(|| AppError::TooManyRequests {
            detail: format!(
                "you already hold {} event streams open here (INFERPUSH_MAX_STREAMS_PER_USER); close one, or \
                 follow all your tasks on one GET /v1/events",
                state.delivery.streams.max()
            ),
            seconds: 5,
        })?;
        let live = state.delivery.live.subscribe();
        let resumed = matches!(cursor, Cursor::After(_));
        let Replayed { events: first, ended, more } = self.replay_page(&state, &mut cursor).await?;
        let is_final = record.as_ref().is_some_and(|r| r.status.is_final());
        if resumed && is_final && first.is_empty() {
            // A reconnect after the task's last event: 204 tells EventSource to stop.
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let mut first: Vec<Event> = first.into_iter().map(|(event, _)| event).collect();
        first.insert(0, Event::default().retry(RECONNECT_AFTER));
        let outbox = Outbox::new(STREAM_BUFFER_BYTES, self.close.clone());
        let finished = record.filter(|r| r.status.is_final());
        match finished {
            _ if ended => outbox.finish(),
            Some(record) if !more => {
                first.push(final_event(&record).0);
                outbox.finish();
            }
            finished => {
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    self.follow(&state, cursor, more, live, &outbox, finished).await;
                    outbox.finish();
                });
            }
        }
        // The slot is held as long as the response body lives.
        let rest = outbox.events().map(move |event| {
            let _held = &slot;
            event
        });
        let events = futures::stream::iter(first).chain(rest).map(Ok::<_, Infallible>);
        Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
    }

    /// One page of the log's events after `cursor`, moving the cursor past it.
    async fn replay_page(&self, state: &AppState, cursor: &mut Cursor) -> Result<Replayed, AppError> {
        let page = state.delivery.events.read(&self.user_id, cursor.start(), PAGE).await?;
        let mut replayed = Replayed { events: Vec::new(), ended: false, more: page.len() == PAGE };
        for event in page {
            *cursor = Cursor::After(event.id);
            if self.carries(&event) {
                replayed.events.push(sse_event(&event));
                if self.ends_with(&event) {
                    replayed.ended = true;
                    replayed.more = false;
                    break;
                }
            }
        }
        Ok(replayed)
    }

    /// Sends the log's events after `cursor`, a page at a time (the client's pace holds
    /// the next read back, within [`STALL_PATIENCE`]); meanwhile the live feed is drained,
    /// so that this stream never holds the replica's feed back. Answers whether the stream
    /// is over (its task's final event went out, or the client left or was cut off), and
    /// whether live events of this stream came in meanwhile (to read from the log next).
    async fn replay_into(
        &self,
        state: &AppState,
        cursor: &mut Cursor,
        outbox: &Outbox,
        live: &mut broadcast::Receiver<Live>,
    ) -> Result<(bool, bool), AppError> {
        let mut missed = false;
        loop {
            let page = self.replay_page(state, cursor).await?;
            for (event, size) in page.events {
                let send = outbox.send(event, size, STALL_PATIENCE);
                tokio::pin!(send);
                let sent = loop {
                    tokio::select! {
                        sent = &mut send => break sent,
                        next = live.recv() => match next {
                            Ok(Live::Event(event)) => missed |= self.carries(&event),
                            Ok(Live::Gap) | Err(broadcast::error::RecvError::Lagged(_)) => missed = true,
                            Err(broadcast::error::RecvError::Closed) => {}
                        },
                    }
                };
                if let Err(refused) = sent {
                    cut_off_if_behind(&refused, &self.user_id);
                    return Ok((true, missed));
                }
            }
            if page.ended {
                return Ok((true, missed));
            }
            if !page.more {
                return Ok((false, missed));
            }
        }
    }

    /// Whether `event` is the last of this stream: a task's final event.
    fn ends_with(&self, event: &LoggedEvent) -> bool {
        self.task.is_some() && inferpush_protocol::EventName::is_final(&event.event)
    }

    /// The rest of the log when `more` of it waits, then the live feed until the client
    /// leaves (or its task ends): new events out, and after a gap the log read again from
    /// the last one sent. A `finished` task whose final event is not in the log gets it
    /// rebuilt from its record once the log is read. A client that falls more than
    /// [`STREAM_BUFFER_BYTES`] behind the live feed is cut off, never waited for.
    async fn follow(
        self,
        state: &AppState,
        mut cursor: Cursor,
        more: bool,
        mut live: broadcast::Receiver<Live>,
        outbox: &Outbox,
        finished: Option<TaskRecord>,
    ) {
        let mut gap = more;
        loop {
            if std::mem::take(&mut gap) {
                match self.replay_into(state, &mut cursor, outbox, &mut live).await {
                    Ok((true, _)) => return,
                    Ok((false, true)) => {
                        // Live events came in while the log was sent: read it again.
                        gap = true;
                        continue;
                    }
                    Ok((false, false)) => {
                        if let Some(record) = &finished {
                            let (event, size) = final_event(record);
                            let _ = outbox.send(event, size, STALL_PATIENCE).await;
                            return;
                        }
                    }
                    // The log is unreadable now; the feed reports a gap when Redis is back,
                    // and the log is read again then.
                    Err(error) => tracing::warn!(%error, "event stream: cannot read the log"),
                }
            }
            let next = tokio::select! {
                () = outbox.closed() => return,
                // The replica is stopping: ending the stream sends the client elsewhere.
                () = state.delivery.live.closed() => return,
                next = live.recv() => next,
            };
            match next {
                Ok(Live::Event(event)) if self.carries(&event) && cursor.wants(event.id) => {
                    cursor = Cursor::After(event.id);
                    let (sse, size) = sse_event(&event);
                    if let Err(refused) = outbox.offer(sse, size) {
                        cut_off_if_behind(&refused, &self.user_id);
                        return;
                    }
                    if self.ends_with(&event) {
                        return;
                    }
                }
                Ok(Live::Event(_)) => {}
                Ok(Live::Gap) | Err(broadcast::error::RecvError::Lagged(_)) => gap = true,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Counts and logs a stream cut off for falling behind.
fn cut_off_if_behind(refused: &Refused, user_id: &str) {
    if *refused == Refused::Behind {
        metrics::stream_cut_off();
        tracing::info!(
            user = user_id,
            "event stream cut off: its client fell behind; it resumes with Last-Event-ID"
        );
    }
}

/// A finished task's final event rebuilt from its record (no id: it is not in the log,
/// having been announced elsewhere only, or trimmed), and its size.
fn final_event(record: &TaskRecord) -> (Event, usize) {
    let data = serde_json::to_string(&record.event()).expect("events always serialise");
    let name = record.status.event_name().unwrap_or(inferpush_protocol::EventName::FAILED);
    let size = data.len() + name.len();
    (Event::default().event(name).data(data), size)
}

/// One read of the log.
struct Replayed {
    /// The stream's events of that page, with their sizes.
    events: Vec<(Event, usize)>,
    /// One of them ends the stream.
    ended: bool,
    /// The page was full: more may follow.
    more: bool,
}

/// A logged event as sent, and its size.
fn sse_event(event: &LoggedEvent) -> (Event, usize) {
    let id = event.id.to_string();
    let size = id.len() + event.event.len() + event.data.len();
    (Event::default().id(id).event(&event.event).data(&event.data), size)
}
