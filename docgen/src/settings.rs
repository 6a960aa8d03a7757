//! The configuration reference: every environment variable the api and the worker read,
//! from their clap definitions.

use std::collections::BTreeMap;

use clap::CommandFactory;

use crate::{cell, generated_from};

/// Read before the flags are parsed (logging, metrics and tracing are set up first), so
/// they have no clap definition; `service/src/telemetry.rs` and `service/src/metrics.rs`
/// read them.
const READ_AT_START: [(&str, &str, &str); 5] = [
    (
        "RUST_LOG",
        "`info`",
        "What is logged (tracing's `EnvFilter` syntax, e.g. `inferpush_worker=debug,info`).",
    ),
    (
        "INFERPUSH_LOG_FORMAT",
        "`text`",
        "`json`: one JSON object per line, a task's lines carrying its `task_id` and `trace_id`.",
    ),
    (
        "INFERPUSH_METRICS",
        "`true`",
        "`false` turns the Prometheus metrics off (nothing recorded, `/metrics` answers 404).",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "unset",
        "An OTLP/HTTP collector's base URL; one trace per task is exported there.",
    ),
    ("OTEL_SERVICE_NAME", "the binary's name", "The service name the traces carry."),
];

struct Setting {
    default: String,
    read_by: Vec<&'static str>,
    secret: bool,
    help: String,
}

fn collect(binary: &'static str, command: clap::Command, into: &mut BTreeMap<String, Setting>) {
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env().and_then(|e| e.to_str()) else { continue };
        if arg.is_hide_set() {
            continue;
        }
        let defaults: Vec<String> =
            arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect();
        let help = arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
        let default = match defaults.is_empty() {
            false if defaults.iter().all(String::is_empty) => "empty".to_owned(),
            false => format!("`{}`", defaults.join(",")),
            true => help
                .split_once("[default: ")
                .and_then(|(_, rest)| rest.split_once(']'))
                .map_or_else(|| "unset".to_owned(), |(default, _)| default.to_owned()),
        };
        let entry = into.entry(env.to_owned()).or_insert_with(|| Setting {
            default,
            read_by: Vec::new(),
            secret: arg.is_hide_env_values_set(),
            help: help.split(" [default: ").next().unwrap_or_default().to_owned(),
        });
        entry.read_by.push(binary);
    }
}

/// The page.
pub fn page() -> String {
    let mut settings = BTreeMap::new();
    collect("api", inferpush_api::config::ApiConfig::command(), &mut settings);
    collect("worker", inferpush_worker::config::WorkerConfig::command(), &mut settings);
    let mut out =
        generated_from("the binaries' settings (`ApiConfig`, `WorkerConfig`, `service/src/settings.rs`)");
    out.push_str(
        "| variable | default | read by | secret | what it sets |\n| --- | --- | --- | --- | --- |\n",
    );
    for (env, setting) in &settings {
        out.push_str(&format!(
            "| `{env}` | {} | {} | {} | {} |\n",
            cell(&setting.default),
            setting.read_by.join(", "),
            if setting.secret { "yes" } else { "" },
            cell(&setting.help)
        ));
    }
    out.push_str("\nRead by both binaries before their flags, to set up logging, metrics and tracing:\n\n");
    out.push_str("| variable | default | what it sets |\n| --- | --- | --- |\n");
    for (env, default, help) in READ_AT_START {
        out.push_str(&format!("| `{env}` | {default} | {help} |\n"));
    }
    out
}
