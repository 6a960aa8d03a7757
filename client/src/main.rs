//! `inferpush`: the quickest way to try the platform from a terminal.
//!
//! ```sh
//! inferpush --token dev-alice submit --model echo --input '{"hello": "world"}' --wait
//! inferpush --token dev-alice chat "What is the capital of France?"
//! ```

mod commands;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// A command line client of inferpush.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: Command,
}

/// Where the platform is and who is asking.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The api's base URL.
    #[arg(long, env = "INFERPUSH_API_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub api_url: String,
    /// Bearer credential: an API key or a JWT (with `make run`, `dev-alice` works).
    #[arg(long, env = "INFERPUSH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Soketi's WebSocket base URL.
    #[arg(long, env = "INFERPUSH_WS_URL", default_value = "ws://127.0.0.1:6001", global = true)]
    pub ws_url: String,
    /// The Pusher app key.
    #[arg(long, env = "PUSHER_APP_KEY", default_value = "app-key", global = true)]
    pub pusher_key: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Submit a task; with --wait, print its result as it arrives over Pusher (a
    /// generation's text as it is written).
    Submit(commands::submit::SubmitArgs),
    /// Ask a text-generation model; its answer is written as it is generated.
    Chat(commands::chat::ChatArgs),
    /// Print a task's state as the status API has it.
    Status {
        /// The task's id.
        task_id: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Submit(args) => commands::submit::run(&cli.connection, &args).await,
        Command::Chat(args) => commands::chat::run(&cli.connection, &args).await,
        Command::Status { task_id } => commands::status::run(&cli.connection, &task_id).await,
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
