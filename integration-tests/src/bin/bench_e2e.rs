//! `inferpush-bench-e2e` (`make bench-e2e`): starts a stack of the release binaries (the
//! push server `INFERPUSH_PUSH_SERVER` names, api, worker on the echo model, the machine's
//! RabbitMQ and Redis), then for each rate
//! offers echo tasks open-loop from several users with real Pusher connections, measures
//! the two parts alone at the same rate, and writes `report.md`, `results.json` and
//! `latency.svg` into the output folder.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use inferpush_integration_tests::bench::cpu::IdleCpu;
use inferpush_integration_tests::bench::platform::Platform;
use inferpush_integration_tests::bench::report::{self, RatePoint};
use inferpush_integration_tests::bench::{parts, redis, sinks};
use inferpush_integration_tests::otlp::OtlpReceiver;
use inferpush_integration_tests::{Stack, StackOptions};

#[derive(Debug, Parser)]
#[command(
    about = "End-to-end load generator: latency and CPU per task against offered rate",
    long_about = "End-to-end load generator for inferpush: latency and CPU per task against offered rate.\n\n\
It starts the push server (INFERPUSH_PUSH_SERVER: soketi, the default, or sockudo), inferpush-api \
and inferpush-worker (the release binaries beside it, or INFERPUSH_BIN_DIR) on free ports against \
the machine's RabbitMQ (AMQP_URL) and Redis (REDIS_URL), connects --users users to the push server, each subscribed to their private channel as pusher-js would be, \
then for each --rates value submits echo tasks open-loop for --seconds (a tick is never held back \
by a slow answer) and times each task from sending its submit to its inference.completed event's \
arrival. Beside each rate it measures the platform's two parts alone at the same rate: a persistent \
publish confirmed by a quorum queue, and a push-server REST trigger until a subscribed client has it.\n\n\
Reading the report (report.md, results.json, latency.svg in --out): `e2e p50 ÷ parts` is what the \
platform adds over RabbitMQ + the push server alone; the CPU columns are milliseconds of CPU per task of \
each process (`push`: the push server), net of what it uses at rest (read from /proc), and the RSS \
columns the largest resident memory of the api and the push server: on a small machine they say which process \
runs out first, and a deployment's cores divided by their sum bounds its rate; `lost` must be 0. \
Sizing a deployment: run it on a machine like the one you will deploy on, and read the highest \
rate held with p99 under your budget."
)]
struct Args {
    /// Offered rates, tasks per second.
    #[arg(long, value_delimiter = ',', default_value = "100,250,500,1000,2000")]
    rates: Vec<u32>,
    /// Seconds of load per rate.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds each part is measured alone per rate.
    #[arg(long, default_value_t = 5)]
    part_seconds: u64,
    /// Users, each with a Pusher connection; tasks go round them.
    #[arg(long, default_value_t = 2)]
    users: usize,
    /// Longest wait for the last events after the load stops.
    #[arg(long, default_value_t = 15)]
    drain_seconds: u64,
    /// Run the api and the worker with their Prometheus metrics turned off
    /// (`INFERPUSH_METRICS=false`), to measure what the metrics cost.
    #[arg(long)]
    metrics_off: bool,
    /// Export OpenTelemetry traces from the api and the worker (to a receiver in this
    /// process), to measure what tracing costs.
    #[arg(long)]
    traces: bool,
    /// The sinks the platform runs with (INFERPUSH_SINKS), e.g. `pusher` to measure the
    /// Pusher path alone; default: the deployment default.
    #[arg(long)]
    sinks: Option<String>,
    /// After the rates, measure every sink against the others at this rate on a stack
    /// with all four on (0: skip).
    #[arg(long, default_value_t = 100)]
    per_sink_rate: u32,
    /// The MQTT broker for the per-sink measurement (anonymous; topics under a prefix of
    /// this run's own).
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// After the rest, compare Redis's shapes (one server, Sentinel with WAIT, a
    /// three-primary Cluster) at this rate, one stack each (0: skip).
    #[arg(long, default_value_t = 250)]
    redis_rate: u32,
    /// Where the report goes.
    #[arg(long, default_value = "target/bench-e2e")]
    out: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let unlimited = "1000000".to_owned();
    let api_env = vec![
        ("INFERPUSH_SUBMIT_RATE", unlimited.clone()),
        ("INFERPUSH_SUBMIT_BURST", unlimited.clone()),
        ("INFERPUSH_AUTH_RATE", unlimited.clone()),
        ("INFERPUSH_AUTH_BURST", unlimited.clone()),
        ("INFERPUSH_MAX_IN_FLIGHT", unlimited.clone()),
        ("INFERPUSH_FAIR_SHARE", unlimited),
    ];
    let mut telemetry = vec![("INFERPUSH_METRICS", (!args.metrics_off).to_string())];
    let receiver = match args.traces {
        true => Some(OtlpReceiver::start().await),
        false => None,
    };
    telemetry.extend(receiver.iter().flat_map(OtlpReceiver::env));
    if let Some(sinks) = &args.sinks {
        telemetry.push(("INFERPUSH_SINKS", sinks.clone()));
    }
    let api_env = [api_env, telemetry.clone()].concat();
    let worker_env = telemetry;
    let options = StackOptions {
        api_env: api_env.clone(),
        worker_env: worker_env.clone(),
        prefetch: 256,
        ..Default::default()
    };
    let stack = Stack::start_with(options).await;
    let (measured, sampled) = redis::measured(&stack);
    let mut platform = Platform::connect(&stack, args.users).await;
    let idle = IdleCpu::measure(&measured, Duration::from_secs(5)).await;
    let at_rest: Vec<String> = idle.all().iter().map(|(name, ms)| format!("{name} {ms:.1}")).collect();
    let at_rest = format!("CPU at rest, ms per second (subtracted from the runs): {}", at_rest.join(", "));
    eprintln!("{at_rest}");

    let mut points = Vec::new();
    for &rate in &args.rates {
        eprintln!("rate {rate}/s: platform for {} s", args.seconds);
        let run = platform
            .run(rate, args.seconds, Duration::from_secs(args.drain_seconds), &measured, &idle, &sampled)
            .await;
        eprintln!("rate {rate}/s: parts alone for {} s each", args.part_seconds);
        let publish = parts::confirmed_publish(&stack, rate, args.part_seconds).await;
        let trigger = parts::pusher_trigger(&stack, rate, args.part_seconds).await;
        let point = RatePoint { platform: run, publish, trigger };
        eprintln!("{}", report::table(std::slice::from_ref(&point)));
        points.push(point);
    }

    let setting = format!(
        "Push server {}, users {}, {} s per rate, sinks {}, metrics {}, trace export {}{}.",
        stack.push.name(),
        args.users,
        args.seconds,
        args.sinks.as_deref().unwrap_or("default (pusher,sse,webhook)"),
        if args.metrics_off { "off" } else { "on" },
        if args.traces { "on" } else { "off" },
        receiver.map_or(String::new(), |r| format!(" ({} spans received)", r.spans().len()))
    );
    drop(platform);
    drop(stack);
    let per_sink = match args.per_sink_rate {
        0 => String::new(),
        rate => per_sink(&args, rate, api_env.clone()).await?,
    };
    let drain = Duration::from_secs(args.drain_seconds);
    let shapes = match args.redis_rate {
        0 => String::new(),
        rate => redis::compare(rate, args.seconds, drain, args.users, &api_env, &worker_env).await,
    };
    eprintln!("{shapes}");
    let table = format!("{setting}\n\n{}\n{at_rest}\n\n{per_sink}\n{shapes}", report::table(&points));
    println!("{table}");
    std::fs::write(args.out.join("report.md"), &table)?;
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(&report::json(&points))?)?;
    report::plot(&points, &args.out.join("latency.svg"))?;
    eprintln!("wrote {}/report.md, results.json and latency.svg", args.out.display());
    Ok(())
}

/// Every sink against the others, on a stack of its own with all four on.
async fn per_sink(args: &Args, rate: u32, api_env: Vec<(&'static str, String)>) -> anyhow::Result<String> {
    let (host, port) = args.mqtt.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("--mqtt is host:port"))?;
    let prefix = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let env = sinks::stack_env(&format!("mqtt://{}", args.mqtt), &prefix);
    let api_env = [api_env, env.clone()].concat();
    let options = StackOptions { api_env, worker_env: env, prefetch: 256, ..Default::default() };
    let stack = Stack::start_with(options).await;
    eprintln!("every sink at {rate}/s for {} s", args.seconds);
    let drain = Duration::from_secs(args.drain_seconds);
    let results = sinks::measure(&stack, (host, port.parse()?), &prefix, rate, args.seconds, drain).await?;
    let table = sinks::table(rate, &results);
    eprintln!("{table}");
    Ok(table)
}
