//! `inferpush status TASK_ID`: the task as `GET /v1/inference/{id}` answers it.

use std::process::ExitCode;

use crate::Connection;

/// Prints the task's record as JSON.
pub async fn run(connection: &Connection, task_id: &str) -> anyhow::Result<ExitCode> {
    let api = super::api_client(connection)?;
    let record = api.task(&format!("{}/{task_id}", inferpush_protocol::lifecycle::TASKS_PATH)).await?;
    println!("{}", serde_json::to_string_pretty(&record)?);
    Ok(ExitCode::SUCCESS)
}
