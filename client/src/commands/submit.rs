//! `inferpush submit --model M --input JSON [--wait]`: submits a task and, with `--wait`,
//! waits for it over the Pusher protocol ([`super::wait`]) and prints the result when it
//! arrives, with a spinner meanwhile; a generation's text is written as it is generated.

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use inferpush_protocol::http::SubmitRequest;
use serde_json::Value;

use super::wait::{Outcome, generated_text};
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
    submit(connection, &args.model, input, args.wait, Duration::from_secs(args.timeout)).await
}

/// Submits `input` to `model`; with `wait`, prints the result (or streams the text).
pub async fn submit(
    connection: &Connection,
    model: &str,
    input: Value,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let api = super::api_client(connection)?;
    let accepted = api.submit(&SubmitRequest::new(model, input)).await.context("submitting the task")?;
    if !wait {
        println!(
            "{}",
            serde_json::json!({"task_id": accepted.task_id, "channel": accepted.channel, "status_url": accepted.status_url})
        );
        return Ok(ExitCode::SUCCESS);
    }
    report(&super::wait::wait(connection, &api, &accepted, timeout).await?)
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

/// The output on stdout, a summary on stderr; exit 1 when the task did not succeed.
/// A generation's text was streamed already; its summary says why it ended and how fast.
fn report(outcome: &Outcome) -> anyhow::Result<ExitCode> {
    let event = &outcome.event;
    let timings = &event.timings;
    let mut summary = format!(
        "{} · {} · {} ms (queued {} ms, inference {} ms) · task {}",
        event.status, event.model, timings.total_ms, timings.queued_ms, timings.inference_ms, event.task_id,
    );
    if let (Some(_), Some(output)) = (generated_text(event), &event.output) {
        let tokens = &output["usage"]["completion_tokens"];
        let speed = output["timings"]["tokens_per_second"].as_f64().unwrap_or_default();
        let finish = output["finish_reason"].as_str().unwrap_or_default();
        summary = format!("{summary} · finish: {finish} · {tokens} tokens, {speed:.1}/s");
    }
    if event.status == inferpush_protocol::TaskStatus::Succeeded {
        if !outcome.streamed {
            println!("{}", serde_json::to_string_pretty(event.output.as_ref().unwrap_or(&Value::Null))?);
        }
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
