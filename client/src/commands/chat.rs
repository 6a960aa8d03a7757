//! `inferpush chat "What is the capital of France?"`: one turn of a conversation with a
//! text-generation model, its answer written to stdout as it is generated (the deltas of
//! the task's channel). The conversation so far can be given with `--system` and
//! `--history` (a JSON array of `{role, content}`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use crate::Connection;

/// Arguments of `chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The message; `-` reads it from standard input.
    message: String,
    /// The text-generation model.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    model: String,
    /// A system message before the conversation.
    #[arg(long)]
    system: Option<String>,
    /// Earlier turns, as a JSON array of `{"role": "user"|"assistant", "content": "…"}`.
    #[arg(long)]
    history: Option<String>,
    /// Most tokens to generate (default: the model card's).
    #[arg(long)]
    max_tokens: Option<u64>,
    /// 0 for greedy decoding (default: the model card's).
    #[arg(long)]
    temperature: Option<f64>,
    /// The same seed and input give the same text.
    #[arg(long)]
    seed: Option<u64>,
    /// How long to wait for the answer, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Sends the turn and streams the answer: exit 0 when it was written to its end.
pub async fn run(connection: &Connection, args: &ChatArgs) -> anyhow::Result<ExitCode> {
    let input = input(args)?;
    super::submit::submit(connection, &args.model, input, true, Duration::from_secs(args.timeout)).await
}

fn input(args: &ChatArgs) -> anyhow::Result<Value> {
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    if let Some(history) = &args.history {
        let turns: Vec<Value> =
            serde_json::from_str(history).context("--history is not a JSON array of messages")?;
        messages.extend(turns);
    }
    let message = match args.message.as_str() {
        "-" => {
            std::io::read_to_string(std::io::stdin()).context("reading the message from standard input")?
        }
        text => text.to_owned(),
    };
    anyhow::ensure!(!message.trim().is_empty(), "the message is empty");
    messages.push(json!({"role": "user", "content": message.trim_end()}));
    let mut input = json!({"messages": messages});
    for (field, value) in [
        ("max_tokens", args.max_tokens.map(Value::from)),
        ("temperature", args.temperature.map(Value::from)),
        ("seed", args.seed.map(Value::from)),
    ] {
        if let Some(value) = value {
            input[field] = value;
        }
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Command {
        #[command(flatten)]
        chat: ChatArgs,
    }

    fn parse(arguments: &[&str]) -> anyhow::Result<Value> {
        input(&Command::try_parse_from(std::iter::once("chat").chain(arguments.iter().copied()))?.chat)
    }

    #[test]
    fn the_turn_follows_the_system_message_and_the_history() {
        let input = parse(&[
            "And of Spain?",
            "--system",
            "Answer briefly.",
            "--history",
            r#"[{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]"#,
            "--temperature",
            "0",
            "--max-tokens",
            "20",
        ])
        .unwrap();
        let roles: Vec<&str> =
            input["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(input["messages"][3]["content"], "And of Spain?");
        assert_eq!(input["temperature"], 0.0);
        assert_eq!(input["max_tokens"], 20);
        assert!(input.get("seed").is_none());
    }

    #[test]
    fn an_empty_message_or_a_broken_history_is_refused() {
        assert!(format!("{:#}", parse(&["  "]).unwrap_err()).contains("empty"));
        let error = parse(&["hi", "--history", "{"]).unwrap_err();
        assert!(format!("{error:#}").contains("--history"), "{error:#}");
    }
}
