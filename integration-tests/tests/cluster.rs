//! The cluster of `deploy/compose.yaml` under faults: `make test-cluster` starts it, runs
//! these one at a time (they are ignored by a plain `cargo test`), and removes it. Each
//! fault run drives a burst of 300 echo tasks from the api's balancer while real Pusher
//! clients listen through the push server's balancer, breaks one piece mid-burst, brings it back,
//! and ends with the accounting of the process-mode fault tests plus two times: recovered
//! (from the fault until results reach a listener again) and settled (until every accepted
//! task was final). Lost must be 0, and every submit made exactly one task (the burst
//! retries with one `Idempotency-Key` per submit). The push server's nodes are Soketi's, or
//! Sockudo's with `INFERPUSH_PUSH_SERVER=sockudo` (deploy/compose.sockudo.yaml).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use inferpush_client::api::ApiClient;
use inferpush_integration_tests::accounting::{Accounting, account, wait_final};
use inferpush_integration_tests::burst::spawn_burst_counting;
use inferpush_integration_tests::listener::{Listener, ListenerTarget};
use inferpush_integration_tests::process::workspace_root;
use inferpush_integration_tests::{PushServer, PusherClient};
use inferpush_protocol::event::{BatchEvent, BatchEvents};
use inferpush_protocol::{AppCredentials, Clock, RestRequest, SystemClock};
use serde_json::json;

const API: &str = "http://127.0.0.1:8080";
const PUSHER: &str = "ws://127.0.0.1:6001";
/// The push server's first and second node, each on its own published port.
const NODE_1: &str = "127.0.0.1:6011";
const NODE_2: &str = "127.0.0.1:6012";
const APP: (&str, &str, &str) = ("app-id", "app-key", "app-secret");
const SETTLE: Duration = Duration::from_secs(90);

/// `scripts/cluster.sh ARGS…`; its output, or a panic naming what failed.
fn cluster(args: &[&str]) -> String {
    let output = std::process::Command::new(workspace_root().join("scripts/cluster.sh"))
        .args(args)
        .output()
        .expect("running scripts/cluster.sh");
    assert!(output.status.success(), "cluster.sh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn listener() -> Listener {
    Listener::start(ListenerTarget {
        ws_base: PUSHER.into(),
        app_key: APP.1.into(),
        api_url: API.into(),
        api_key: "dev-alice".into(),
        channel: "private-inference.alice".into(),
    })
    .await
}

fn results(listeners: &[Listener]) -> usize {
    listeners.iter().map(|l| l.seen().results.len()).sum()
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// When a fault strikes.
enum Strike {
    /// Once 50 results reached each listener (the burst paced, 16 lanes).
    AfterResults,
    /// Once 100 submits were accepted, the burst unpaced on 32 lanes: submits are in
    /// flight at every moment.
    AmidSubmits,
}

/// A burst with two listeners (the balancer puts them on different Soketi nodes); `fault`
/// runs when `strike` says (and may accept tasks of its own, which it returns); then
/// everything is counted, once per listener.
async fn burst_with_fault<F, Fut>(name: &str, description: &str, strike: Strike, fault: F) -> Vec<Accounting>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    let listeners = vec![listener().await, listener().await];
    let burst_started_ms = SystemClock.now_ms();
    let progress = Arc::new(AtomicUsize::new(0));
    let (lanes, pause) = match strike {
        Strike::AfterResults => (16, Duration::from_millis(20)),
        Strike::AmidSubmits => (32, Duration::ZERO),
    };
    let input = |i| json!({"i": i, "delay_ms": 20});
    let burst = spawn_burst_counting(API.into(), "dev-alice", 300, lanes, pause, input, progress.clone());
    match strike {
        Strike::AfterResults => {
            wait_until("50 results at each listener", Duration::from_secs(60), || results(&listeners) >= 100)
                .await
        }
        Strike::AmidSubmits => {
            wait_until("100 accepted submits", Duration::from_secs(60), || {
                progress.load(Ordering::SeqCst) >= 100
            })
            .await
        }
    }

    // Recovery: from the fault until results flow again, watched while the fault runs.
    let before = results(&listeners);
    let started = Instant::now();
    let flowing = async {
        wait_until("a result after the fault", SETTLE, || results(&listeners) > before).await;
        started.elapsed().as_millis()
    };
    let (own_tasks, recovered_ms) = tokio::join!(fault(), flowing);

    let burst = burst.await.expect("the burst");
    assert_eq!(burst.gave_up, 0, "some submits never got a 202");
    let api = ApiClient::new(API, "dev-alice");
    wait_final(&api, &burst.accepted, SETTLE).await;
    wait_final(&api, &own_tasks, SETTLE).await;
    let settled_ms = started.elapsed().as_millis();
    // One task per submit: every retry carried its submit's Idempotency-Key, so the user
    // holds exactly the accepted tasks, none made twice.
    let mut created: Vec<String> = api
        .list_all(&burst_started_ms.to_string(), 200)
        .await
        .expect("listing the burst's tasks")
        .into_iter()
        .map(|t| t.task_id.to_string())
        .collect();
    created.sort();
    let mut accepted = [&burst.accepted[..], &own_tasks[..]].concat();
    accepted.sort();
    accepted.dedup();
    assert_eq!(created, accepted, "the tasks made are not one per submit");
    let mut accountings = Vec::new();
    for (n, listener) in listeners.iter().enumerate() {
        // Every task is final: give events in flight a moment, then count. A listener that
        // was away catches up through the status API, as a real client does.
        let seen = listener.wait_for(&burst.accepted, Duration::from_secs(5)).await;
        let accounting = account(&api, &burst.accepted, &seen, SETTLE).await;
        println!(
            "ACCOUNTING cluster-{name} listener {n}: fault={description} {accounting} http_503_retried={} \
             other_retried={} tasks_made={} recovered_ms={recovered_ms} settled_ms={settled_ms} subscriptions={}",
            burst.unavailable,
            burst.retried,
            created.len(),
            seen.subscriptions
        );
        assert_eq!(accounting.accepted, 300);
        assert_eq!(accounting.lost, 0, "{accounting}");
        accountings.push(accounting);
    }
    accountings
}

/// A client on push-server node `addr`. This test runs first, right after the cluster is
/// up: a node that listens may not yet complete a handshake (its adapter still reaching
/// Redis through the Sentinels), so it is tried again for up to 30 s, as a client would.
async fn connect_node(addr: &str) -> PusherClient {
    let started = std::time::Instant::now();
    loop {
        match PusherClient::connect(&format!("ws://{addr}"), APP.1).await {
            Ok(client) => return client,
            Err(error) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("{addr}: {error}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => panic!("{addr}: {error}"),
        }
    }
}

#[tokio::test]
#[ignore = "needs the cluster: make test-cluster"]
async fn a_client_on_one_push_server_node_receives_what_is_pushed_through_the_other() {
    let api = ApiClient::new(API, "dev-alice");
    let mut on_first = connect_node(NODE_1).await;
    let auth = api.channel_auth(&on_first.socket_id, "private-inference.alice").await.unwrap();
    on_first.subscribe("private-inference.alice", &auth.auth, None).await.unwrap();

    // An event through the second node's REST API reaches the client on the first.
    let credentials = AppCredentials::new(APP.0, APP.1, APP.2);
    let event = BatchEvent {
        channel: "private-inference.alice".into(),
        name: "inference.completed".into(),
        data: json!({"task_id": "cross-node"}).to_string(),
    };
    let body = serde_json::to_vec(&BatchEvents { batch: vec![event] }).unwrap();
    let path = format!("/apps/{}/batch_events", APP.0);
    let query = credentials.sign_rest(&RestRequest {
        method: "POST",
        path: &path,
        body: &body,
        timestamp: SystemClock.now_secs(),
        params: &[],
    });
    let pushed = reqwest::Client::new()
        .post(format!("http://{NODE_2}{path}?{query}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(pushed.status().is_success(), "{}", pushed.status());
    let received = on_first.next_event("inference.completed", Duration::from_secs(10)).await;
    assert_eq!(received.expect("the event crossed nodes").json()["task_id"], "cross-node");

    // And a real task, pushed by whichever worker through the balancer, reaches clients on
    // both nodes.
    let mut on_second = connect_node(NODE_2).await;
    let auth = api.channel_auth(&on_second.socket_id, "private-inference.alice").await.unwrap();
    on_second.subscribe("private-inference.alice", &auth.auth, None).await.unwrap();
    let accepted = api
        .submit(&inferpush_protocol::http::SubmitRequest::new("echo", json!({"cross": "node"})))
        .await
        .unwrap();
    for client in [&mut on_first, &mut on_second] {
        let event =
            client.next_event("inference.completed", Duration::from_secs(30)).await.expect("the result");
        assert_eq!(event.json()["task_id"], accepted.task_id.to_string());
    }
}

#[tokio::test]
#[ignore = "needs the cluster: make test-cluster"]
async fn a_worker_killed_mid_burst_loses_nothing() {
    let accountings =
        burst_with_fault("worker", "SIGKILL worker-1 for 3 s", Strike::AfterResults, || async {
            cluster(&["kill", "worker-1"]);
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster(&["start", "worker-1"]);
            Vec::new()
        })
        .await;
    assert!(accountings.iter().all(|a| a.delivered_live + a.caught_up == 300));
}

#[tokio::test]
#[ignore = "needs the cluster: make test-cluster"]
async fn an_api_replica_killed_with_submits_in_flight_loses_nothing_and_makes_nothing_twice() {
    burst_with_fault(
        "api-replica",
        "SIGKILL api-1 for 3 s, submits in flight",
        Strike::AmidSubmits,
        || async {
            // Eight submits whose bodies trickle in over 3 s: the balancer hands about half
            // to api-1, which is reading them when it dies.
            let run = uuid::Uuid::new_v4().simple().to_string();
            let trickled: Vec<_> =
                (0..8).map(|n| tokio::spawn(trickled_submit(format!("trickle-{run}-{n}")))).collect();
            tokio::time::sleep(Duration::from_secs(1)).await;
            cluster(&["kill", "api-1"]);
            tokio::time::sleep(Duration::from_secs(3)).await;
            cluster(&["start", "api-1"]);
            let mut ids = Vec::new();
            let mut cut_off = 0;
            for submit in trickled {
                let (id, first_attempt_failed) = submit.await.expect("a trickled submit");
                ids.push(id);
                cut_off += usize::from(first_attempt_failed);
            }
            println!("trickled submits: 8, cut off by the kill and retried with their key: {cut_off}");
            assert!(cut_off > 0, "no submit was in flight at api-1 when it died; the test proves little");
            ids
        },
    )
    .await;
}

/// A submit whose body is sent one byte at a time over 3 s, straight through the
/// balancer; if that attempt fails (the replica died under it), it is retried at once
/// with the same `Idempotency-Key`, as any client should. Returns the task id and whether
/// the first attempt failed.
async fn trickled_submit(key: String) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"model": "echo", "input": {"trickled": key}}).to_string();
    let first = async {
        let mut stream = tokio::net::TcpStream::connect(API.trim_start_matches("http://")).await?;
        let head = format!(
            "POST /v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer dev-alice\r\n\
             Content-Type: application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        let pause = Duration::from_secs(3) / body.len() as u32;
        for byte in body.as_bytes() {
            stream.write_all(&[*byte]).await?;
            tokio::time::sleep(pause).await;
        }
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    if let Ok(answer) = first.await
        && answer.starts_with("HTTP/1.1 202")
    {
        let json = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let accepted: serde_json::Value = serde_json::from_str(json).expect("a 202 body");
        return (accepted["task_id"].as_str().expect("task_id").to_owned(), false);
    }
    let http = reqwest::Client::new();
    for _ in 0..120 {
        let sent = http
            .post(format!("{API}/v1/inference"))
            .bearer_auth("dev-alice")
            .header("idempotency-key", &key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        if let Ok(response) = sent {
            match response.status().as_u16() {
                202 => {
                    let accepted: serde_json::Value = response.json().await.expect("a 202 body");
                    return (accepted["task_id"].as_str().expect("task_id").to_owned(), true);
                }
                409 | 502 | 503 | 504 => {}
                other => panic!("unexpected {other} retrying a trickled submit"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("a trickled submit was never accepted");
}

#[tokio::test]
#[ignore = "needs the cluster: make test-cluster"]
async fn a_push_server_node_killed_mid_burst_loses_nothing() {
    let node = format!("{}-1", PushServer::from_env().name());
    let fault = format!("SIGKILL {node} for 4 s");
    burst_with_fault("push-server-node", &fault, Strike::AfterResults, || async {
        cluster(&["kill", &node]);
        tokio::time::sleep(Duration::from_secs(4)).await;
        cluster(&["start", &node]);
        Vec::new()
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the cluster: make test-cluster"]
async fn the_rabbitmq_node_leading_the_task_queue_killed_mid_burst_loses_nothing() {
    // The main lane's queue, named exactly (its bulk lane's name starts the same). A queue
    // still settling after the previous fault is left out of the listing ("unresponsive"):
    // ask again for a while.
    let leader_in = |leaders: &str| {
        leaders.lines().find_map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["inferpush.tasks.echo", leader] => leader.strip_prefix("rabbit@").map(str::to_owned),
            _ => None,
        })
    };
    let mut leaders = String::new();
    let mut leader = None;
    for _ in 0..30 {
        leaders = cluster(&["exec", "rabbitmq-1", "rabbitmqctl", "-q", "list_queues", "name", "leader"]);
        leader = leader_in(&leaders);
        if leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let leader = leader.unwrap_or_else(|| panic!("no leader for the echo queue in {leaders}"));
    let description = format!("SIGKILL {leader} (the echo queue's leader) for 5 s");
    burst_with_fault("rabbitmq-leader", &description, Strike::AfterResults, || async {
        cluster(&["kill", &leader]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        cluster(&["start", &leader]);
        Vec::new()
    })
    .await;
}

/// The Redis node the Sentinels name master now.
fn redis_master() -> String {
    let answer = cluster(&[
        "exec",
        "sentinel-1",
        "redis-cli",
        "-p",
        "26379",
        "sentinel",
        "get-master-addr-by-name",
        "inferpush",
    ]);
    answer.lines().next().unwrap_or_default().trim().to_owned()
}

/// dev-alice's server-sent events, followed as a browser's `EventSource` does: on any
/// break it reconnects with the last id it got, until dropped.
struct SseFollower {
    events: Arc<std::sync::Mutex<Vec<inferpush_integration_tests::sse::SseEvent>>>,
    reconnects: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SseFollower {
    async fn start() -> Self {
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let reconnects = Arc::new(AtomicUsize::new(0));
        let (seen, again) = (events.clone(), reconnects.clone());
        let http = reqwest::Client::new();
        let url = format!("{API}/v1/events");
        let mut opened =
            inferpush_integration_tests::sse::open(&http, &url, "dev-alice", None).await.expect("SSE");
        let task = tokio::spawn(async move {
            loop {
                while let Some(event) = opened.recv().await {
                    seen.lock().unwrap().push(event);
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let last = seen.lock().unwrap().iter().rev().find_map(|e| e.id.clone());
                    if let Ok(next) =
                        inferpush_integration_tests::sse::open(&http, &url, "dev-alice", last.as_deref())
                            .await
                    {
                        again.fetch_add(1, Ordering::SeqCst);
                        opened = next;
                        break;
                    }
                }
            }
        });
        Self { events, reconnects, task }
    }
}

impl Drop for SseFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
#[ignore = "needs the cluster: make test-cluster"]
async fn the_redis_primary_killed_mid_burst_loses_nothing_and_sse_resumes_without_a_gap() {
    let primary = redis_master();
    assert!(primary.starts_with("redis-"), "the Sentinels name `{primary}`");
    let sse = SseFollower::start().await;
    let description =
        format!("SIGKILL {primary} (the Redis primary), submits in flight; back after the failover");
    burst_with_fault("redis-primary", &description, Strike::AmidSubmits, || async {
        let killed = Instant::now();
        cluster(&["kill", &primary]);
        let mut promoted = String::new();
        while killed.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            promoted = redis_master();
            if !promoted.is_empty() && promoted != primary {
                break;
            }
        }
        assert_ne!(promoted, primary, "the Sentinels promoted no replica within 60 s");
        println!(
            "FAILOVER {primary} -> {promoted} named by the Sentinels after {} ms",
            killed.elapsed().as_millis()
        );
        // The old primary comes back as the new one's replica.
        cluster(&["start", &primary]);
        Vec::new()
    })
    .await;
    // Every task of the burst ended in one `inference.completed` on the stream, resumed
    // across the failover by Last-Event-ID: none missing, none twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = sse.events.lock().unwrap().clone();
    let completed: Vec<String> = events
        .iter()
        .filter(|e| e.event == "inference.completed")
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["task_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let distinct: std::collections::HashSet<&String> = completed.iter().collect();
    println!(
        "SSE across the failover: {} completed events, {} tasks, {} reconnects",
        completed.len(),
        distinct.len(),
        sse.reconnects.load(Ordering::SeqCst)
    );
    assert_eq!(distinct.len(), 300, "a task's completion is missing from the stream");
    assert_eq!(completed.len(), 300, "a completion came twice");
}
