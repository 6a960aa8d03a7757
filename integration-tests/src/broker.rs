//! A look at a real RabbitMQ (the machine's shared one, or a stack's own container):
//! queue depths, consumers, clean-up of a test's names.

use std::time::Duration;

use inferpush_protocol::Topology;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

/// The machine's shared broker: `AMQP_URL`, else the local default.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The address the broker of `url` listens on (for a proxy in front of it).
pub async fn broker_addr(url: &str) -> std::net::SocketAddr {
    let broker = reqwest::Url::parse(url).expect("AMQP_URL is a URL");
    let address = format!("{}:{}", broker.host_str().expect("a host"), broker.port().unwrap_or(5672));
    tokio::net::lookup_host(address).await.expect("the broker's host resolves").next().expect("an address")
}

/// Messages ready and consumers attached on `queue` (which must exist) of the broker at `url`.
pub async fn queue_stats(url: &str, queue: &str) -> (u32, u32) {
    let connection =
        Connection::connect(url, ConnectionProperties::default()).await.expect("connecting to RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    let options = QueueDeclareOptions { passive: true, ..Default::default() };
    let queue =
        channel.queue_declare(queue.into(), options, FieldTable::default()).await.expect("queue exists");
    let _ = connection.close(200, "done".into()).await;
    (queue.message_count(), queue.consumer_count())
}

/// Waits until `queue` of the broker at `url` has `consumers` consumers.
pub async fn wait_for_consumers(url: &str, queue: &str, consumers: u32, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let connection = Connection::connect(url, ConnectionProperties::default()).await;
        if let Ok(connection) = connection {
            let channel = connection.create_channel().await.expect("channel");
            let options = QueueDeclareOptions { passive: true, ..Default::default() };
            let declared = channel.queue_declare(queue.into(), options, FieldTable::default()).await;
            let _ = connection.close(200, "done".into()).await;
            if let Ok(queue) = declared
                && queue.consumer_count() == consumers
            {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} did not reach {consumers} consumers within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes the exchanges and queues of a test's topology on the broker at `url`.
pub async fn delete_topology(url: &str, topology: &Topology, models: &[&str]) {
    let Ok(connection) = Connection::connect(url, ConnectionProperties::default()).await else {
        return;
    };
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let mut queues: Vec<String> = models
        .iter()
        .flat_map(|m| inferpush_protocol::Lane::ALL.map(|lane| topology.lane_queue(m, lane)))
        .collect();
    queues.push(topology.dead_letter_queue());
    queues.extend(topology.webhook_queues());
    for queue in queues {
        let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    }
    for exchange in [topology.exchange(), topology.dead_letter_exchange()] {
        let _ = channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
    }
    let _ = connection.close(200, "done".into()).await;
}

/// Publishes `body` straight to the task exchange of the broker at `url`, as a buggy or
/// hostile publisher that skipped the api's validation might.
pub async fn publish_raw(url: &str, topology: &Topology, model: &str, body: &[u8]) {
    use lapin::BasicProperties;
    use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
    let connection = Connection::connect(url, ConnectionProperties::default()).await.expect("connecting");
    let channel = connection.create_channel().await.expect("channel");
    channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let properties = BasicProperties::default().with_delivery_mode(2);
    channel
        .basic_publish(
            topology.exchange().into(),
            model.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    let _ = connection.close(200, "done".into()).await;
}

/// Stops the shared RabbitMQ's application (`rabbitmqctl stop_app`); it is started
/// again when the guard drops, whatever happened in between.
pub struct RabbitOutage {
    running: bool,
}

fn rabbitmqctl(command: &str) -> bool {
    std::process::Command::new("rabbitmqctl")
        .arg("-q")
        .arg(command)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl RabbitOutage {
    /// Stops the broker's application.
    pub fn begin() -> Self {
        assert!(rabbitmqctl("stop_app"), "rabbitmqctl stop_app failed");
        Self { running: false }
    }

    /// Starts it again and waits until it accepts connections.
    pub async fn end(mut self) {
        self.restart();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while Connection::connect(&amqp_url(), ConnectionProperties::default()).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "RabbitMQ did not come back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn restart(&mut self) {
        if !self.running {
            self.running = rabbitmqctl("start_app");
        }
    }
}

impl Drop for RabbitOutage {
    fn drop(&mut self) {
        self.restart();
    }
}
