//! A caller's own tasks: `GET /v1/inference/{id}`, `GET /v1/inference?since=…` to catch
//! up after being away, and `DELETE /v1/inference/{id}` to cancel one not yet started (or
//! stop a running generation, which keeps the text written so far).
//! Another user's task is a 404, exactly like a task that does not exist.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use inferpush_protocol::http::{ListQuery, Problem, TaskList};
use inferpush_protocol::lifecycle::{TASK_ROUTE, TASKS_PATH};
use inferpush_protocol::{TaskId, TaskRecord, TaskStatus};
use inferpush_repository::Kind;
use inferpush_store::Transition;

use crate::AppState;
use crate::auth::User;
use crate::body::{Path, Query};
use crate::error::AppError;
use crate::openapi::PROBLEM_JSON;

/// Most tasks one list call returns.
const MAX_LIMIT: usize = 500;

/// Most bytes of task records one list call returns (at least one task always).
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The routes of this area.
pub fn router() -> Router<AppState> {
    Router::new().route(TASKS_PATH, get(list)).route(TASK_ROUTE, get(status).delete(cancel))
}

fn not_found() -> AppError {
    AppError::NotFound("no such task".into())
}

/// The caller's task, or 404 for an unknown, expired or foreign id.
pub(crate) async fn own_task(state: &AppState, user: &User, task_id: &str) -> Result<TaskRecord, AppError> {
    let task_id: TaskId = task_id.parse().map_err(|_| not_found())?;
    match state.store.get(&user.id, task_id).await? {
        Some(record) if record.user_id == user.id => Ok(record),
        _ => Err(not_found()),
    }
}

/// One of the caller's tasks: its state, and its output or error once finished; while a
/// generation runs, `progress` holds its text so far and the `seq` of the last delta in it.
#[utoipa::path(
    get,
    path = TASK_ROUTE,
    tag = "tasks",
    security(("bearer" = [])),
    params(("task_id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = TaskRecord),
        (status = 404, description = "No such task, or not the caller's, or its record expired", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    user: User,
    Path(task_id): Path<String>,
) -> Result<Json<TaskRecord>, AppError> {
    let mut record = own_task(&state, &user, &task_id).await?;
    if record.status == TaskStatus::Running && streams(&state, &record) {
        record.progress = state.progress.progress(record.task_id).await?;
    }
    Ok(Json(record))
}

/// Whether `record`'s model writes its output in pieces (a generation).
fn streams(state: &AppState, record: &TaskRecord) -> bool {
    state.catalogue.find(&record.model).is_some_and(|entry| entry.kind == Kind::TextGeneration)
}

/// Cancel one of the caller's tasks that no worker has started; its `inference.failed`
/// event says `cancelled`. A running generation is asked to stop: 202, and its worker ends
/// it `cancelled` within a decode step or so, with the text so far in `output`.
#[utoipa::path(
    delete,
    path = TASK_ROUTE,
    tag = "tasks",
    security(("bearer" = [])),
    params(("task_id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task, now cancelled (also when it already was)", body = TaskRecord),
        (status = 202, description = "A running generation, asked to stop: it ends `cancelled` with its text so far", body = TaskRecord),
        (status = 404, description = "No such task, or not the caller's", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The task has started or finished", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    user: User,
    Path(task_id): Path<String>,
) -> Result<axum::response::Response, AppError> {
    use axum::response::IntoResponse;
    let record = own_task(&state, &user, &task_id).await?;
    if record.status == TaskStatus::Running && streams(&state, &record) {
        state.progress.ask_stop(record.task_id).await?;
        tracing::info!(task_id = %record.task_id, "running generation asked to stop");
        return Ok((axum::http::StatusCode::ACCEPTED, Json(record)).into_response());
    }
    if record.status == TaskStatus::Running {
        return Err(AppError::Conflict(
            "the task is already running; only a queued task, or a running generation, can be cancelled"
                .into(),
        ));
    }
    let cancelled = record.cancelled(state.clock.as_ref());
    match state.store.transition(&cancelled).await? {
        Transition::Applied => {
            crate::metrics::task_state(TaskStatus::Cancelled);
            tracing::info!(task_id = %record.task_id, "task cancelled");
            Ok(Json(cancelled).into_response())
        }
        Transition::Kept(current) if current.status == TaskStatus::Cancelled => {
            Ok(Json(*current).into_response())
        }
        Transition::Kept(current) => Err(AppError::Conflict(format!(
            "the task is already {}; only a queued task can be cancelled",
            current.status
        ))),
        Transition::Missing => Err(not_found()),
    }
}

fn parse_since(since: Option<&str>) -> Result<(u64, Option<TaskId>), AppError> {
    let Some(since) = since.filter(|s| !s.is_empty()) else {
        return Ok((0, None));
    };
    if let Ok(ms) = since.parse::<u64>() {
        return Ok((ms, None));
    }
    let id: TaskId = since.parse().map_err(|_| {
        AppError::Unprocessable("`since` must be a task id or a time in Unix milliseconds".into())
    })?;
    let (seconds, nanos) =
        id.0.get_timestamp()
            .ok_or_else(|| AppError::Unprocessable("`since` must be a task id (UUIDv7)".into()))?
            .to_unix();
    Ok((seconds * 1000 + u64::from(nanos) / 1_000_000, Some(id)))
}

/// The caller's tasks, oldest first, to catch up after being away.
#[utoipa::path(
    get,
    path = TASKS_PATH,
    tag = "tasks",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "One page of tasks", body = TaskList),
        (status = 422, description = "`since` or `limit` is invalid", body = Problem, content_type = PROBLEM_JSON),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    Query(query): Query<ListQuery>,
) -> Result<Json<TaskList>, AppError> {
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(AppError::Unprocessable(format!("`limit` must be from 1 to {MAX_LIMIT}")));
    }
    let (since_ms, after) = parse_since(query.since.as_deref())?;
    state.limits.list.check(&user.id)?;
    let page = state.store.list_since(&user.id, since_ms, after, limit, MAX_PAGE_BYTES).await?;
    let next_since = if page.more { page.cursor } else { None };
    Ok(Json(TaskList { tasks: page.tasks, has_more: next_since.is_some(), next_since }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_milliseconds_or_a_task_id() {
        assert_eq!(parse_since(None).unwrap(), (0, None));
        assert_eq!(parse_since(Some("1700000000000")).unwrap(), (1_700_000_000_000, None));
        let id = TaskId::new_v7();
        let (ms, after) = parse_since(Some(&id.to_string())).unwrap();
        assert_eq!(after, Some(id));
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(now.abs_diff(ms) < 5_000, "{ms} vs {now}");
        assert!(parse_since(Some("yesterday")).is_err());
    }
}
