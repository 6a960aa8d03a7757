//! `inferpush status TASK_ID`: the task as `GET /v1/inference/{id}` answers it.

use std::process::ExitCode;

use crate::Connection;

/// Prints the task's record as JSON.
pub async fn run(connection: &Connection, task_id: &str) -> anyhow::Result<ExitCode> {
    let api = super::api_client(connection)?;
    let record = api.task(&format!("/v1/inference/{task_id}")).await?;
    println!("{}", serde_json::to_string_pretty(&record)?);
    Ok(ExitCode::SUCCESS)
}
