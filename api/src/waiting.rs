//! Answering with the finished task instead of 202, when the client asks to wait
//! (`Prefer: wait=N`, RFC 7240, as Replicate has it): the submit holds until the task is
//! final or the wait is over. The task's events wake it (this replica's live feed), a slow
//! poll of the store covers tasks whose events are not logged; the push happens as always.

use std::time::Duration;

use axum::http::HeaderMap;
use inferpush_protocol::{TaskId, TaskRecord};
use inferpush_store::events::Live;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::AppState;
use crate::error::AppError;
use crate::limits::UserSlot;
use crate::metrics;

/// What a request's `Prefer` header asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preferences {
    /// `wait` or `wait=N`: hold the answer up to this long for the result.
    pub wait: Option<Duration>,
    /// `respond-async`: answer at once.
    pub respond_async: bool,
}

/// The wait of a bare `Prefer: wait`.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);

impl Preferences {
    /// Reads every `Prefer` header (preferences it does not know are ignored, as RFC 7240
    /// asks); a wait is bounded by `max_wait`.
    pub fn of(headers: &HeaderMap, max_wait: Duration) -> Self {
        let mut preferences = Self::default();
        let values = headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok());
        for preference in values.flat_map(|v| v.split(',')) {
            let token = preference.split(';').next().unwrap_or("").trim();
            let (name, value) = match token.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
                None => (token, None),
            };
            match (name.to_ascii_lowercase().as_str(), value) {
                ("respond-async", _) => preferences.respond_async = true,
                ("wait", None) => preferences.wait = Some(DEFAULT_WAIT.min(max_wait)),
                ("wait", Some(seconds)) => {
                    if let Ok(seconds) = seconds.parse::<u64>() {
                        preferences.wait = Some(Duration::from_secs(seconds).min(max_wait));
                    }
                }
                _ => {}
            }
        }
        if preferences.respond_async {
            preferences.wait = None;
        }
        preferences
    }
}

/// The task's record once final, or `None` when `deadline` comes first (or the store
/// cannot be read: the task stays accepted, and the client follows it as usual).
pub async fn until_final(
    state: &AppState,
    user_id: &str,
    task_id: TaskId,
    deadline: Instant,
) -> Option<TaskRecord> {
    let mut live = state.delivery.live.subscribe();
    let mut poll = Duration::from_millis(25);
    loop {
        match state.store.get(user_id, task_id).await {
            Ok(Some(record)) if record.status.is_final() => return Some(record),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, %task_id, "waiting for a task: the store is unavailable; answering 202");
                return None;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        tokio::select! {
            () = tokio::time::sleep((deadline - now).min(poll)) => poll = (poll * 2).min(Duration::from_millis(500)),
            () = news_of(&mut live, task_id) => {}
        }
    }
}

/// Resolves on this task's final event, or when the feed may have missed one.
async fn news_of(live: &mut broadcast::Receiver<Live>, task_id: TaskId) {
    loop {
        match live.recv().await {
            Ok(Live::Event(event))
                if event.task_id == task_id && inferpush_protocol::EventName::is_final(&event.event) =>
            {
                return;
            }
            Ok(Live::Event(_)) => {}
            Ok(Live::Gap) | Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

/// One of `user`'s requests that wait for their results, held until dropped; past
/// `INFERPUSH_MAX_WAITS_PER_USER` a 429 that says what to do `instead`.
pub fn hold_wait(state: &AppState, user: &str, instead: &str) -> Result<UserSlot, AppError> {
    state.limits.waits.open(user).ok_or_else(|| {
        metrics::rate_limited("wait");
        AppError::TooManyRequests {
            detail: format!(
                "you already hold {} requests waiting for their results here (INFERPUSH_MAX_WAITS_PER_USER); \
                 retry when one has been answered, or {instead}",
                state.limits.waits.max()
            ),
            seconds: 1,
        }
    })
}

/// What a synchronous answer past its wait says: the task is still on its way.
pub fn still_running(task_id: TaskId, status_url: &str, waited: Duration) -> String {
    format!(
        "task {task_id} did not finish within {} s; it is still queued or running, its result will be pushed as \
         usual and can be read at {status_url}",
        waited.as_secs()
    )
}

/// Names the task a synchronous answer comes from: `Location` (its status URL) and
/// `inferpush-task-id`.
pub fn name_task(response: &mut axum::response::Response, status_url: &str, task_id: TaskId) {
    let headers = response.headers_mut();
    if let Ok(location) = axum::http::HeaderValue::from_str(status_url) {
        headers.insert(axum::http::header::LOCATION, location);
    }
    headers.insert(
        "inferpush-task-id",
        axum::http::HeaderValue::from_str(&task_id.to_string()).expect("a uuid"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(values: &[&str]) -> Preferences {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("prefer", value.parse().unwrap());
        }
        Preferences::of(&headers, Duration::from_secs(30))
    }

    #[test]
    fn reads_wait_and_respond_async_as_rfc_7240_writes_them() {
        assert_eq!(prefer(&[]), Preferences::default());
        assert_eq!(prefer(&["wait=5"]).wait, Some(Duration::from_secs(5)));
        assert_eq!(prefer(&["wait"]).wait, Some(Duration::from_secs(30)), "bounded by the most allowed");
        assert_eq!(prefer(&["wait=600"]).wait, Some(Duration::from_secs(30)));
        assert_eq!(prefer(&["handling=lenient, wait=\"3\""]).wait, Some(Duration::from_secs(3)));
        assert_eq!(prefer(&["return=minimal", "WAIT=2"]).wait, Some(Duration::from_secs(2)));
        assert_eq!(prefer(&["wait=soon"]).wait, None, "an unreadable wait is ignored");
        let asynchronous = prefer(&["respond-async, wait=10"]);
        assert!(asynchronous.respond_async && asynchronous.wait.is_none());
    }
}
