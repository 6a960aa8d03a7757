//! What each sink adds: one user's echo tasks at a fixed rate, each delivered by all four
//! sinks at once, received by a client of each (a Pusher connection, a server-sent event
//! stream, an MQTT subscription on the machine's broker, a webhook receiver in this
//! process), every arrival timed from the moment its submit was sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inferpush_client::pusher::PusherClient;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::{Latencies, open_loop};
use crate::stack::{Stack, user_jwt};

/// The user the measurement runs as.
const USER: &str = "sinkbench";

/// One sink's latencies.
#[derive(Debug, Clone)]
pub struct SinkLatency {
    /// `pusher`, `sse`, `mqtt` or `webhook`.
    pub sink: &'static str,
    /// Tasks whose completion arrived this way.
    pub delivered: usize,
    /// From sending the submit to the completion's arrival.
    pub end_to_end: Latencies,
}

/// A completion seen by one sink's client.
struct Seen {
    sink: usize,
    seq: usize,
    at: Instant,
}

const SINKS: [&str; 4] = ["pusher", "sse", "mqtt", "webhook"];

/// The settings a stack needs for [`measure`]: every sink on, MQTT on the machine's broker
/// under `topic_prefix`.
pub fn stack_env(mqtt_url: &str, topic_prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("INFERPUSH_SINKS", "pusher,sse,mqtt,webhook".into()),
        ("INFERPUSH_MQTT_URL", mqtt_url.into()),
        ("INFERPUSH_MQTT_TOPIC_PREFIX", topic_prefix.into()),
    ]
}

/// Offers `rate` tasks per second for `seconds` with every sink listening; waits up to
/// `drain` for the last arrivals.
pub async fn measure(
    stack: &Stack,
    mqtt: (&str, u16),
    topic_prefix: &str,
    rate: u32,
    seconds: u64,
    drain: Duration,
) -> anyhow::Result<Vec<SinkLatency>> {
    let token: Arc<str> = Arc::from(user_jwt(USER).as_str());
    let run = uuid::Uuid::now_v7().simple().to_string();
    let (seen, mut arrivals) = mpsc::unbounded_channel::<Seen>();
    let seq_of = {
        let run = run.clone();
        move |event: &Value| -> Option<usize> {
            let output = &event["output"];
            (output["run"] == run.as_str()).then(|| output["seq"].as_u64()).flatten().map(|s| s as usize)
        }
    };

    // Pusher.
    let mut pusher: PusherClient =
        stack.subscribed_client(&token, &format!("private-inference.{USER}")).await;
    let (tx, seq) = (seen.clone(), seq_of.clone());
    tokio::spawn(async move {
        while let Some(message) = pusher.recv().await {
            if message.event == "inference.completed"
                && let Some(seq) = seq(&message.json())
            {
                let _ = tx.send(Seen { sink: 0, seq, at: Instant::now() });
            }
        }
    });

    // Server-sent events.
    let mut events =
        crate::sse::open(stack.http(), &format!("{}/v1/events", stack.api_url), &token, None).await?;
    let (tx, seq) = (seen.clone(), seq_of.clone());
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if event.event == "inference.completed"
                && let Some(seq) = serde_json::from_str(&event.data).ok().as_ref().and_then(&seq)
            {
                let _ = tx.send(Seen { sink: 1, seq, at: event.at });
            }
        }
    });

    // MQTT.
    let mut options = rumqttc::MqttOptions::new(format!("bench-{run}"), mqtt.0, mqtt.1);
    options.set_keep_alive(Duration::from_secs(15)).set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
    client.subscribe(format!("{topic_prefix}/{USER}/events"), rumqttc::QoS::AtLeastOnce).await?;
    let (tx, seq) = (seen.clone(), seq_of.clone());
    tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) = event {
                let at = Instant::now();
                let message: Value = serde_json::from_slice(&publish.payload).unwrap_or_default();
                if message["event"] == "inference.completed"
                    && let Some(seq) = seq(&message["data"])
                {
                    let _ = tx.send(Seen { sink: 2, seq, at });
                }
            }
        }
    });

    // Webhooks.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    let (tx, seq) = (seen.clone(), seq_of);
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (tx, seq) = (tx.clone(), seq.clone());
            async move {
                let at = Instant::now();
                let payload: Value = serde_json::from_slice(&body).unwrap_or_default();
                if payload["type"] == "inference.completed"
                    && let Some(seq) = seq(&payload["data"])
                {
                    let _ = tx.send(Seen { sink: 3, seq, at });
                }
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let count = rate as usize * seconds as usize;
    let (http, url) = (stack.http().clone(), format!("{}/v1/inference", stack.api_url));
    let sent_at: Arc<std::sync::Mutex<HashMap<usize, Instant>>> = Arc::default();
    let sending = {
        let (sent_at, token, run) = (sent_at.clone(), token.clone(), run.clone());
        tokio::spawn(open_loop(rate, count, move |seq| {
            let body = json!({"model": "echo", "input": {"run": run, "seq": seq}, "webhook": hook});
            let request = http.post(&url).bearer_auth(&*token).json(&body);
            let sent_at = sent_at.clone();
            async move {
                sent_at.lock().unwrap().insert(seq, Instant::now());
                if let Ok(response) = request.send().await {
                    let _ = response.bytes().await;
                }
            }
        }))
    };
    let mut results: Vec<SinkLatency> = SINKS
        .iter()
        .map(|sink| SinkLatency { sink, delivered: 0, end_to_end: Latencies::default() })
        .collect();
    let mut got: Vec<std::collections::HashSet<usize>> = vec![Default::default(); SINKS.len()];
    let mut deadline = None;
    loop {
        if got.iter().all(|g| g.len() >= count) {
            break;
        }
        if deadline.is_none() && sending.is_finished() {
            deadline = Some(tokio::time::Instant::now() + drain);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
        let Ok(Some(arrival)) = tokio::time::timeout(Duration::from_millis(50), arrivals.recv()).await else {
            continue;
        };
        let Some(sent) = sent_at.lock().unwrap().get(&arrival.seq).copied() else { continue };
        if got[arrival.sink].insert(arrival.seq) {
            results[arrival.sink].end_to_end.push(arrival.at.saturating_duration_since(sent));
        }
    }
    for (result, got) in results.iter_mut().zip(&got) {
        result.delivered = got.len();
    }
    Ok(results)
}

/// The per-sink table, each sink against Pusher.
pub fn table(rate: u32, results: &[SinkLatency]) -> String {
    let pusher = results.iter().find(|r| r.sink == "pusher").map(|r| r.end_to_end.percentile_ms(50.0));
    let mut out = format!(
        "Each task delivered by all four sinks at once, {rate}/s, one user; time from sending the submit to the \
         completion's arrival at that sink's client.\n\n| sink | delivered | p50 ms | p99 ms | p50 − Pusher's |\n|---|---|---|---|---|\n"
    );
    for r in results {
        let p50 = r.end_to_end.percentile_ms(50.0);
        let extra = pusher.map_or(String::from("—"), |base| format!("{:+.1} ms", p50 - base));
        out.push_str(&format!(
            "| {} | {} | {p50:.1} | {:.1} | {extra} |\n",
            r.sink,
            r.delivered,
            r.end_to_end.percentile_ms(99.0)
        ));
    }
    out
}
