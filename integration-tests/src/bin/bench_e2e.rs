//! `inferpush-bench-e2e` (`make bench-e2e`): starts a stack of the release binaries (Soketi,
//! api, worker on the echo model, the machine's RabbitMQ and Redis), then for each rate
//! offers echo tasks open-loop from several users with real Pusher connections, measures
//! the two parts alone at the same rate, and writes `report.md`, `results.json` and
//! `latency.svg` into the output folder.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use inferpush_integration_tests::bench::cpu::{Measured, pids_named};
use inferpush_integration_tests::bench::parts;
use inferpush_integration_tests::bench::platform::Platform;
use inferpush_integration_tests::bench::report::{self, RatePoint};
use inferpush_integration_tests::{Stack, StackOptions};

#[derive(Debug, Parser)]
#[command(about = "End-to-end load generator: latency and CPU per task against offered rate")]
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
    let options = StackOptions { api_env, prefetch: 256, ..Default::default() };
    let stack = Stack::start_with(options).await;
    let mut measured: Vec<Measured> =
        stack.pids().into_iter().map(|(name, pid)| Measured { name, pids: vec![pid] }).collect();
    measured.push(Measured { name: "rabbitmq", pids: pids_named("beam.smp") });
    measured.push(Measured { name: "redis", pids: pids_named("redis-server") });
    measured.push(Measured { name: "loadgen", pids: vec![std::process::id()] });
    let api_pid = stack.pids().iter().find(|(name, _)| *name == "api").map(|(_, pid)| *pid).unwrap_or(0);
    let mut platform = Platform::connect(&stack, args.users).await;

    let mut points = Vec::new();
    for &rate in &args.rates {
        eprintln!("rate {rate}/s: platform for {} s", args.seconds);
        let run = platform
            .run(rate, args.seconds, Duration::from_secs(args.drain_seconds), &measured, api_pid)
            .await;
        eprintln!("rate {rate}/s: parts alone for {} s each", args.part_seconds);
        let publish = parts::confirmed_publish(&stack, rate, args.part_seconds).await;
        let trigger = parts::pusher_trigger(&stack, rate, args.part_seconds).await;
        let point = RatePoint { platform: run, publish, trigger };
        eprintln!("{}", report::table(std::slice::from_ref(&point)));
        points.push(point);
    }

    let table = report::table(&points);
    println!("{table}");
    std::fs::write(args.out.join("report.md"), &table)?;
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(&report::json(&points))?)?;
    report::plot(&points, &args.out.join("latency.svg"))?;
    eprintln!("wrote {}/report.md, results.json and latency.svg", args.out.display());
    Ok(())
}
