//! The two services the platform is built from, each alone at the same open-loop rate: a
//! persistent message published to a quorum queue with a publisher confirm (what the api
//! waits for before answering 202), and a signed push-server REST trigger timed until a
//! subscribed client receives the event (what the worker's push costs a result).

use std::sync::Arc;
use std::time::{Duration, Instant};

use inferpush_client::pusher::PusherClient;
use inferpush_protocol::{AppCredentials, RestRequest};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::json;
use tokio::sync::mpsc;

use super::{Latencies, open_loop};
use crate::stack::{APP_ID, APP_KEY, APP_SECRET, Stack};

/// Publishes `rate` persistent messages a second for `seconds` to a quorum queue of its
/// own on the stack's broker and times each confirm.
pub async fn confirmed_publish(stack: &Stack, rate: u32, seconds: u64) -> Latencies {
    let connection = Connection::connect(&stack.amqp_url, ConnectionProperties::default())
        .await
        .expect("connecting to RabbitMQ");
    let channel = connection.create_channel().await.expect("a channel");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let queue = format!("{}.bench-publish", stack.name);
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(queue.as_str().into(), durable, arguments).await.expect("declaring the queue");

    let (report, mut timed) = mpsc::unbounded_channel();
    let count = rate as usize * seconds as usize;
    let queue_name: Arc<str> = Arc::from(queue.as_str());
    let publishing = channel.clone();
    open_loop(rate, count, move |seq| {
        let (channel, queue, report) = (publishing.clone(), queue_name.clone(), report.clone());
        async move {
            let body = json!({"seq": seq, "input": {"a": 1}}).to_string();
            let properties = BasicProperties::default().with_delivery_mode(2);
            let sent = Instant::now();
            let confirmed = match channel
                .basic_publish(
                    "".into(),
                    queue.as_ref().into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    properties,
                )
                .await
            {
                Ok(confirm) => confirm.await.is_ok(),
                Err(_) => false,
            };
            if confirmed {
                let _ = report.send(sent.elapsed());
            }
        }
    })
    .await;
    let latencies = collect(&mut timed, count, Duration::from_secs(10)).await;
    let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    let _ = connection.close(0, "done".into()).await;
    latencies
}

/// Triggers `rate` events a second for `seconds` through the push server's signed REST API to a
/// channel one client subscribed to, timing each from the call to the event's arrival.
pub async fn pusher_trigger(stack: &Stack, rate: u32, seconds: u64) -> Latencies {
    let channel = format!("bench-parts-{}", uuid::Uuid::now_v7().simple());
    let mut client =
        PusherClient::connect(&stack.ws_base(), APP_KEY).await.expect("connecting to the push server");
    client.subscribe(&channel, "", None).await.expect("subscribing to a public channel");
    let (arrived, mut arrivals) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = client.recv().await {
            if message.event == "bench" {
                let seq = message.json()["seq"].as_u64().unwrap_or(u64::MAX) as usize;
                if arrived.send((seq, Instant::now())).is_err() {
                    break;
                }
            }
        }
    });

    let count = rate as usize * seconds as usize;
    let sent_at: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; count]));
    let credentials = Arc::new(AppCredentials::new(APP_ID, APP_KEY, APP_SECRET));
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("an HTTP client");
    let base = format!("http://127.0.0.1:{}", stack.pusher_port);
    let (times, channel) = (sent_at.clone(), Arc::<str>::from(channel.as_str()));
    open_loop(rate, count, move |seq| {
        let path = format!("/apps/{APP_ID}/events");
        let data = json!({"seq": seq}).to_string();
        let body = json!({"name": "bench", "channels": [channel.as_ref()], "data": data}).to_string();
        let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let request =
            RestRequest { method: "POST", path: &path, body: body.as_bytes(), timestamp, params: &[] };
        let url = format!("{base}{path}?{}", credentials.sign_rest(&request));
        let request = http.post(url).header("content-type", "application/json").body(body);
        let times = times.clone();
        async move {
            times.lock().unwrap()[seq] = Some(Instant::now());
            if let Ok(response) = request.send().await {
                let _ = response.bytes().await;
            }
        }
    })
    .await;

    let mut latencies = Latencies::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut received = 0;
    while received < count {
        let Ok(Some((seq, at))) = tokio::time::timeout_at(deadline, arrivals.recv()).await else { break };
        received += 1;
        if let Some(Some(sent)) = sent_at.lock().unwrap().get(seq) {
            latencies.push(at.saturating_duration_since(*sent));
        }
    }
    latencies
}

/// Up to `count` latencies from `timed`, waiting at most `drain` after the last one.
async fn collect(timed: &mut mpsc::UnboundedReceiver<Duration>, count: usize, drain: Duration) -> Latencies {
    let mut latencies = Latencies::default();
    while latencies.len() < count {
        match tokio::time::timeout(drain, timed.recv()).await {
            Ok(Some(latency)) => latencies.push(latency),
            _ => break,
        }
    }
    latencies
}
