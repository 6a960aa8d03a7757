//! `inferpush submit --model M --input JSON [--wait]`: submits a task and, with `--wait`,
//! subscribes to the task's channel over the Pusher protocol and prints the result when
//! it arrives, with a spinner meanwhile. The subscription comes after the 202 (the
//! channel is in it), so the status API is read once after subscribing: a result that
//! beat the subscription is found there. If the WebSocket fails, it polls instead.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use inferpush_client::api::ApiClient;
use inferpush_client::pusher::PusherClient;
use inferpush_protocol::InferenceEvent;
use inferpush_protocol::http::{Accepted, SubmitRequest};
use serde_json::Value;
use tokio::time::Instant;

use crate::Connection;

/// Arguments of `submit`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The model, e.g. `echo` or `all-minilm-l6-v2` (`GET /v1/models` lists them).
    #[arg(long)]
    model: String,
    /// The input as JSON text, `@path` for a file, or `-` for standard input,
    /// e.g. `{"texts": ["A man is eating food."]}`.
    #[arg(long)]
    input: String,
    /// Wait for the result and print it (otherwise print the 202 answer and return).
    #[arg(long)]
    wait: bool,
    /// How long to wait for the result, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Submits, and waits when asked: exit 0 on success, 1 when the task failed.
pub async fn run(connection: &Connection, args: &SubmitArgs) -> anyhow::Result<ExitCode> {
    let input = read_input(&args.input)?;
    let api = super::api_client(connection)?;
    let accepted =
        api.submit(&SubmitRequest::new(&args.model, input)).await.context("submitting the task")?;
    if !args.wait {
        println!(
            "{}",
            serde_json::json!({"task_id": accepted.task_id, "channel": accepted.channel, "status_url": accepted.status_url})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template"));
    spinner.set_message(format!(
        "task {} queued, waiting for its result on {}",
        accepted.task_id, accepted.channel
    ));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let waited = wait(connection, &api, &accepted, Duration::from_secs(args.timeout), &spinner).await;
    spinner.finish_and_clear();
    report(&waited?)
}

fn read_input(argument: &str) -> anyhow::Result<Value> {
    let text = match argument {
        "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading the input from standard input")?;
            text
        }
        path if path.starts_with('@') => std::fs::read_to_string(&path[1..])
            .with_context(|| format!("reading the input from {}", &path[1..]))?,
        text => text.to_owned(),
    };
    serde_json::from_str(&text).context("--input is not valid JSON")
}

/// The task's final state: from its Pusher event, or from the status API.
async fn wait(
    connection: &Connection,
    api: &ApiClient,
    accepted: &Accepted,
    timeout: Duration,
    spinner: &ProgressBar,
) -> anyhow::Result<InferenceEvent> {
    let deadline = Instant::now() + timeout;
    let mut live = match subscribe(connection, api, &accepted.channel.to_string()).await {
        Ok(client) => Some(client),
        Err(error) => {
            spinner.println(format!("live results unavailable ({error:#}); polling the status API"));
            None
        }
    };
    let record = api.task(&accepted.status_url).await?;
    if record.status.is_final() {
        return Ok(record.event());
    }
    while Instant::now() < deadline {
        let Some(client) = live.as_mut() else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let record = api.task(&accepted.status_url).await?;
            if record.status.is_final() {
                return Ok(record.event());
            }
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(1), client.recv()).await {
            Ok(Some(message)) if message.event.starts_with("inference.") => {
                let Ok(event) = serde_json::from_value::<InferenceEvent>(message.json()) else {
                    continue;
                };
                if event.task_id != accepted.task_id {
                    continue;
                }
                if !event.status.is_final() {
                    spinner.set_message(format!("task {} running on a worker", accepted.task_id));
                    continue;
                }
                // A result too large for one event waits at the status endpoint.
                return match event.result_url {
                    Some(_) => Ok(api.task(&accepted.status_url).await?.event()),
                    None => Ok(event),
                };
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => {
                spinner.println("the WebSocket closed; polling the status API");
                live = None;
            }
        }
    }
    anyhow::bail!(
        "no result after {} s; the task may still finish: `inferpush status {}`",
        timeout.as_secs(),
        accepted.task_id
    )
}

async fn subscribe(connection: &Connection, api: &ApiClient, channel: &str) -> anyhow::Result<PusherClient> {
    let mut client = PusherClient::connect(&connection.ws_url, &connection.pusher_key)
        .await
        .with_context(|| format!("connecting to {}", connection.ws_url))?;
    let auth = api.channel_auth(&client.socket_id, channel).await.context("authorising the subscription")?;
    client.subscribe(channel, &auth.auth, None).await?;
    Ok(client)
}

/// The output on stdout, a summary on stderr; exit 1 when the task did not succeed.
fn report(event: &InferenceEvent) -> anyhow::Result<ExitCode> {
    let timings = &event.timings;
    let summary = format!(
        "{} · {} · {} ms (queued {} ms, inference {} ms) · task {}",
        event.status, event.model, timings.total_ms, timings.queued_ms, timings.inference_ms, event.task_id,
    );
    if event.status == inferpush_protocol::TaskStatus::Succeeded {
        println!("{}", serde_json::to_string_pretty(event.output.as_ref().unwrap_or(&Value::Null))?);
        eprintln!("✔ {summary}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("✘ {summary}");
        match &event.error {
            Some(error) => eprintln!("{}: {}", error.code, error.message),
            None => eprintln!("error"),
        }
        Ok(ExitCode::from(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_json_text_a_file_or_refused_clearly() {
        assert_eq!(read_input(r#"{"a": 1}"#).unwrap(), serde_json::json!({"a": 1}));
        let path = std::env::temp_dir().join(format!("inferpush-cli-input-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"texts": ["x"]}"#).unwrap();
        assert_eq!(read_input(&format!("@{}", path.display())).unwrap()["texts"][0], "x");
        std::fs::remove_file(&path).unwrap();
        let error = read_input("{not json").unwrap_err();
        assert!(format!("{error:#}").contains("--input is not valid JSON"), "{error:#}");
        assert!(read_input("@/no/such/file").is_err());
    }
}
