//! The whole platform under open-loop load: echo tasks submitted over HTTP at a fixed
//! rate by several users, each user's results received on their own real Pusher
//! connection, each task timed from the moment its submit was sent to its
//! `inference.completed` event's arrival.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferpush_client::pusher::PusherClient;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::cpu::{CpuSnapshot, IdleCpu, Measured, rss_bytes};
use super::{Latencies, open_loop};
use crate::stack::{Stack, user_jwt};

/// One rate's results.
#[derive(Debug, Clone)]
pub struct PlatformRun {
    /// Tasks per second offered.
    pub rate: u32,
    /// Submits sent.
    pub sent: usize,
    /// Submits answered 202.
    pub accepted: usize,
    /// Submits answered otherwise, or not at all.
    pub refused: usize,
    /// Accepted tasks whose event arrived on their user's connection.
    pub delivered: usize,
    /// Accepted tasks whose event never arrived.
    pub lost: usize,
    /// Events that arrived on another user's connection.
    pub misrouted: usize,
    /// Events that arrived more than once.
    pub duplicates: usize,
    /// From sending a submit to its answer.
    pub submit: Latencies,
    /// From sending a submit to its event's arrival.
    pub end_to_end: Latencies,
    /// Where that time went, from the event's own `timings`: accepted until a worker
    /// started the task (RabbitMQ and the worker's intake).
    pub queued: Latencies,
    /// Started until its result was ready (the model, and storing the result).
    pub running: Latencies,
    /// Result ready until the client had the event (the push through the push server, and the
    /// submit's own way to the api, well under a millisecond).
    pub pushing: Latencies,
    /// Milliseconds of CPU per accepted task, by process, net of what it uses at rest.
    pub cpu_ms_per_task: Vec<(&'static str, f64)>,
    /// Largest resident memory during the run of each process sampled for it (the api
    /// and the push server), in bytes.
    pub rss_max_bytes: Vec<(&'static str, u64)>,
}

impl PlatformRun {
    /// Largest resident memory of `process` during the run (0 when not sampled).
    pub fn rss_max(&self, process: &str) -> u64 {
        self.rss_max_bytes.iter().find(|(name, _)| *name == process).map_or(0, |(_, bytes)| *bytes)
    }
}

/// What a submit came to.
struct Submitted {
    seq: usize,
    sent: Instant,
    answered: Instant,
    status: u16,
}

/// An event received on user `user`'s connection.
struct Arrival {
    user: usize,
    data: Value,
    at: Instant,
}

/// The load generator's users, each with a token and a connection subscribed to their
/// private channel.
pub struct Platform {
    submit_url: String,
    http: reqwest::Client,
    tokens: Vec<Arc<str>>,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
}

impl Platform {
    /// Connects `users` users to `stack`, named `bench0`, `bench1`…
    pub async fn connect(stack: &Stack, users: usize) -> Self {
        let (deliver, arrivals) = mpsc::unbounded_channel();
        let mut tokens = Vec::new();
        for user in 0..users {
            let token = user_jwt(&format!("bench{user}"));
            let mut client: PusherClient =
                stack.subscribed_client(&token, &format!("private-inference.bench{user}")).await;
            let deliver = deliver.clone();
            tokio::spawn(async move {
                while let Some(message) = client.recv().await {
                    if message.event == "inference.completed" {
                        let arrival = Arrival { user, data: message.json(), at: Instant::now() };
                        if deliver.send(arrival).is_err() {
                            break;
                        }
                    }
                }
            });
            tokens.push(Arc::from(token.as_str()));
        }
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("an HTTP client");
        Self { submit_url: format!("{}/v1/inference", stack.api_url), http, tokens, arrivals }
    }

    /// Offers `rate` tasks per second for `seconds`, then waits up to `drain` for the last
    /// events; `processes` are measured for CPU time (less their `idle` use) and `sampled`
    /// (name, pid) for memory.
    pub async fn run(
        &mut self,
        rate: u32,
        seconds: u64,
        drain: Duration,
        processes: &[Measured],
        idle: &IdleCpu,
        sampled: &[(&'static str, u32)],
    ) -> PlatformRun {
        while self.arrivals.try_recv().is_ok() {}
        let run_id = uuid::Uuid::now_v7().simple().to_string();
        let count = rate as usize * seconds as usize;
        let (report, mut submitted) = mpsc::unbounded_channel::<Submitted>();
        let cpu_before = CpuSnapshot::take(processes);
        let (http, url, tokens) = (self.http.clone(), self.submit_url.clone(), self.tokens.clone());
        let body_run = run_id.clone();
        let sending = tokio::spawn(open_loop(rate, count, move |seq| {
            let user = seq % tokens.len();
            let request =
                http.post(&url).bearer_auth(&tokens[user]).header("content-type", "application/json").body(
                    json!({"model": "echo", "input": {"run": body_run, "seq": seq, "user": user}})
                        .to_string(),
                );
            let report = report.clone();
            async move {
                let sent = Instant::now();
                let status = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                let _ = report.send(Submitted { seq, sent, answered: Instant::now(), status });
            }
        }));

        let mut answers: HashMap<usize, Submitted> = HashMap::with_capacity(count);
        let mut arrived: HashMap<usize, (Instant, Value)> = HashMap::with_capacity(count);
        let (mut misrouted, mut duplicates) = (0, 0);
        let mut rss_max_bytes: Vec<(&'static str, u64)> =
            sampled.iter().map(|(name, _)| (*name, 0)).collect();
        let mut sampling = tokio::time::interval(Duration::from_millis(100));
        let mut deadline = None;
        loop {
            let accepted = answers.values().filter(|s| s.status == 202).count();
            if answers.len() == count && arrived.len() >= accepted {
                break;
            }
            if deadline.is_none() && sending.is_finished() {
                deadline = Some(tokio::time::Instant::now() + drain);
            }
            let wait = deadline.map_or(Duration::from_millis(50), |d| {
                d.saturating_duration_since(tokio::time::Instant::now()).min(Duration::from_millis(50))
            });
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
            tokio::select! {
                Some(answer) = submitted.recv() => { answers.insert(answer.seq, answer); }
                Some(arrival) = self.arrivals.recv() => {
                    let output = &arrival.data["output"];
                    if output["run"] != run_id.as_str() {
                        continue;
                    }
                    let seq = output["seq"].as_u64().unwrap_or(u64::MAX) as usize;
                    if output["user"].as_u64() != Some(arrival.user as u64) {
                        misrouted += 1;
                    } else if arrived.insert(seq, (arrival.at, arrival.data["timings"].clone())).is_some() {
                        duplicates += 1;
                    }
                }
                _ = sampling.tick() => {
                    for ((_, pid), (_, max)) in sampled.iter().zip(rss_max_bytes.iter_mut()) {
                        *max = (*max).max(rss_bytes(*pid));
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let cpu_after = CpuSnapshot::take(processes);

        let (mut submit, mut end_to_end) = (Latencies::default(), Latencies::default());
        let (mut queued, mut running, mut pushing) =
            (Latencies::default(), Latencies::default(), Latencies::default());
        let ms = |timings: &Value, name: &str| Duration::from_millis(timings[name].as_u64().unwrap_or(0));
        let mut accepted = 0;
        for answer in answers.values() {
            submit.push(answer.answered - answer.sent);
            if answer.status == 202 {
                accepted += 1;
                if let Some((at, timings)) = arrived.get(&answer.seq) {
                    let total = at.saturating_duration_since(answer.sent);
                    end_to_end.push(total);
                    queued.push(ms(timings, "queued_ms"));
                    running.push(ms(timings, "total_ms").saturating_sub(ms(timings, "queued_ms")));
                    pushing.push(total.saturating_sub(ms(timings, "total_ms")));
                }
            }
        }
        let delivered = end_to_end.len();
        PlatformRun {
            rate,
            sent: count,
            accepted,
            refused: count - accepted,
            delivered,
            lost: accepted - delivered,
            misrouted,
            duplicates,
            submit,
            end_to_end,
            queued,
            running,
            pushing,
            cpu_ms_per_task: cpu_before.per_task_ms(&cpu_after, accepted, idle),
            rss_max_bytes,
        }
    }
}
