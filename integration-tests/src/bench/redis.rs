//! What each shape of Redis costs the platform (`make bench-e2e`'s `--redis-rate`): the same
//! open-loop load against one Redis server, a master behind a Sentinel (every accepted task
//! and stored result waiting for the replica, as the store does by default there), and a
//! Redis Cluster of three primaries, each started by `scripts/redis-topology.sh` for the
//! run, one stack after the other in one run.

use std::time::Duration;

use crate::bench::cpu::{IdleCpu, Measured, pids_named};
use crate::bench::platform::{Platform, PlatformRun};
use crate::process::workspace_root;
use crate::{Stack, StackOptions};

/// The set-ups compared, the first the baseline.
pub const SHAPES: [&str; 3] = ["one server", "Sentinel (WAIT 1)", "Cluster (3 primaries)"];

/// The settings that point the api and the worker at `shape` (started now when it needs
/// servers of its own; they end with this process).
pub fn shape_env(shape: &str) -> Vec<(&'static str, String)> {
    let kind = match shape {
        s if s.starts_with("Sentinel") => "sentinel",
        s if s.starts_with("Cluster") => "cluster",
        _ => return Vec::new(),
    };
    let output = std::process::Command::new(workspace_root().join("scripts/redis-topology.sh"))
        .args([kind, "bench", &std::process::id().to_string()])
        .output()
        .expect("running scripts/redis-topology.sh");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let found: std::collections::HashMap<String, String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    match kind {
        "sentinel" => vec![
            ("INFERPUSH_REDIS_SENTINELS", found["SENTINELS"].clone()),
            ("INFERPUSH_REDIS_MASTER", found["MASTER"].clone()),
        ],
        _ => vec![("INFERPUSH_REDIS_CLUSTER_NODES", found["CLUSTER_NODES"].clone())],
    }
}

/// The processes whose CPU a run measures, and the ones whose memory it samples.
pub fn measured(stack: &Stack) -> (Vec<Measured>, Vec<(&'static str, u32)>) {
    // The push server is measured as `push`, whichever it is (INFERPUSH_PUSH_SERVER).
    let processes: Vec<(&'static str, u32)> = stack
        .pids()
        .into_iter()
        .map(|(name, pid)| (if name == stack.push.name() { "push" } else { name }, pid))
        .collect();
    let mut measured: Vec<Measured> =
        processes.iter().map(|&(name, pid)| Measured { name, pids: vec![pid] }).collect();
    measured.push(Measured { name: "rabbitmq", pids: pids_named("beam.smp") });
    measured.push(Measured { name: "redis", pids: pids_named("redis-server") });
    measured.push(Measured { name: "loadgen", pids: vec![std::process::id()] });
    let sampled = processes.iter().copied().filter(|(name, _)| ["api", "push"].contains(name)).collect();
    (measured, sampled)
}

/// One run at `rate` for `seconds` per shape; a Markdown table with each shape's figures
/// beside the one server's.
pub async fn compare(
    rate: u32,
    seconds: u64,
    drain: Duration,
    users: usize,
    api_env: &[(&'static str, String)],
    worker_env: &[(&'static str, String)],
) -> String {
    let mut runs: Vec<(&str, PlatformRun)> = Vec::new();
    for shape in SHAPES {
        let redis = shape_env(shape);
        let options = StackOptions {
            api_env: [api_env, &redis].concat(),
            worker_env: [worker_env, &redis].concat(),
            prefetch: 256,
            ..Default::default()
        };
        let stack = Stack::start_with(options).await;
        let (measured, sampled) = measured(&stack);
        let mut platform = Platform::connect(&stack, users).await;
        let idle = IdleCpu::measure(&measured, Duration::from_secs(3)).await;
        eprintln!("Redis as {shape}: {rate}/s for {seconds} s");
        runs.push((shape, platform.run(rate, seconds, drain, &measured, &idle, &sampled).await));
    }
    table(rate, &runs)
}

fn table(rate: u32, runs: &[(&str, PlatformRun)]) -> String {
    let cpu = |run: &PlatformRun, name: &str| {
        run.cpu_ms_per_task.iter().find(|(n, _)| *n == name).map_or(f64::NAN, |(_, ms)| *ms)
    };
    let base = &runs[0].1;
    let mut out = format!(
        "Redis's shapes at {rate} tasks/s (one stack each, one after the other; ratios against one server)\n\n\
         | Redis | submit p50 | submit p99 | e2e p50 | e2e p99 | api CPU ms/task | worker CPU ms/task | redis CPU ms/task | lost |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    );
    for (shape, run) in runs {
        let ratio = |value: f64, base: f64| format!("{value:.2} ({:.2}×)", value / base);
        out.push_str(&format!(
            "| {shape} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            ratio(run.submit.percentile_ms(50.0), base.submit.percentile_ms(50.0)),
            ratio(run.submit.percentile_ms(99.0), base.submit.percentile_ms(99.0)),
            ratio(run.end_to_end.percentile_ms(50.0), base.end_to_end.percentile_ms(50.0)),
            ratio(run.end_to_end.percentile_ms(99.0), base.end_to_end.percentile_ms(99.0)),
            ratio(cpu(run, "api"), cpu(base, "api")),
            ratio(cpu(run, "worker"), cpu(base, "worker")),
            ratio(cpu(run, "redis"), cpu(base, "redis")),
            run.lost,
        ));
    }
    out
}
