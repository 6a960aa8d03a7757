//! A broker whose publisher confirms come late, or never, seen through a TCP proxy in front
//! of the real RabbitMQ (the api connects through it, the worker directly). The api must
//! tell each client the truth: a 503 that names the task whose fate is unknown; a retry
//! with the same Idempotency-Key answers that task; the task runs exactly once (counted by
//! its `inference.started` events), whether the broker got it the first time or only from
//! the api's follow-up; and the user's in-flight count ends at zero.

use std::time::Duration;

use inferpush_integration_tests::broker::{amqp_url, broker_addr};
use inferpush_integration_tests::listener::{Listener, ListenerTarget};
use inferpush_integration_tests::stack::APP_KEY;
use inferpush_integration_tests::tcp_proxy::{Mode, TcpProxy};
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::{Value, json};

/// The api's publish timeout in these tests.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// A stack whose api reaches RabbitMQ through a proxy, and a listener on alice's channel.
async fn stack_behind_proxy() -> (Stack, TcpProxy, Listener) {
    stack_behind_proxy_with(Vec::new()).await
}

/// [`stack_behind_proxy`], with more settings for the api.
async fn stack_behind_proxy_with(api_env: Vec<(&'static str, String)>) -> (Stack, TcpProxy, Listener) {
    let proxy = TcpProxy::start(broker_addr(&amqp_url()).await).await;
    let mut broker = reqwest::Url::parse(&amqp_url()).expect("AMQP_URL is a URL");
    broker.set_port(Some(proxy.port)).unwrap();
    let options = StackOptions {
        api_env: [
            vec![
                ("AMQP_URL", broker.to_string()),
                ("INFERPUSH_PUBLISH_TIMEOUT", format!("{}s", PUBLISH_TIMEOUT.as_secs())),
            ],
            api_env,
        ]
        .concat(),
        ..Default::default()
    };
    let stack = Stack::start_with(options).await;
    let listener = Listener::start(ListenerTarget {
        ws_base: stack.ws_base(),
        app_key: APP_KEY.into(),
        api_url: stack.api_url.clone(),
        api_key: "dev-alice".into(),
        channel: "private-inference.alice".into(),
    })
    .await;
    (stack, proxy, listener)
}

/// Submits an echo task as alice, with `key` as its Idempotency-Key when given.
async fn submit(stack: &Stack, key: Option<&str>, n: u64) -> (u16, Value) {
    let mut request = stack
        .http()
        .post(format!("{}/v1/inference", stack.api_url))
        .bearer_auth("dev-alice")
        .json(&json!({"model": "echo", "input": {"n": n}}));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("the api answers");
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

/// A submit whose confirm is lost: a 503 that names the task and where to read it.
async fn unconfirmed_submit(stack: &Stack, key: Option<&str>, n: u64) -> String {
    let started = tokio::time::Instant::now();
    let (status, body) = submit(stack, key, n).await;
    assert_eq!(status, 503, "{body}\n{}", stack.logs());
    let task_id = body["task_id"].as_str().unwrap_or_else(|| panic!("the 503 names the task: {body}"));
    assert!(body["status_url"].as_str().unwrap().ends_with(task_id), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("may be queued or not"), "{body}");
    assert!(started.elapsed() < PUBLISH_TIMEOUT + Duration::from_secs(3), "answered within the timeout");
    task_id.to_owned()
}

/// Retries `key` until the api answers the task (a 409 says the first request is still being
/// settled); returns the id it answered.
async fn replay(stack: &Stack, key: &str, n: u64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = submit(stack, Some(key), n).await;
        match status {
            202 => return body["task_id"].as_str().unwrap().to_owned(),
            409 | 503 if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => panic!("replaying {key}: {status} {body}\n{}", stack.logs()),
        }
    }
}

/// Waits until the task's stored status is final; returns it.
async fn final_status(stack: &Stack, task_id: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, record) = stack.task("dev-alice", task_id).await;
        assert_eq!(code, 200, "{record}");
        let status = record["status"].as_str().unwrap().to_owned();
        if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{task_id} still {status}\n{}", stack.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks each task ran once and was announced, and that alice holds no in-flight slot.
async fn ran_once_each(stack: &Stack, listener: &Listener, task_ids: &[String]) {
    listener.wait_for(task_ids, Duration::from_secs(30)).await;
    // A second copy in the queue is acked untouched or announced again, never run again:
    // give one a moment to show up before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = listener.seen();
    for id in task_ids {
        assert_eq!(seen.started.get(id), Some(&1), "{id} ran once: {:?}\n{}", seen.started, stack.logs());
        assert!(seen.results.contains_key(id), "{id} was announced");
    }
    let mut redis =
        redis::Client::open(stack.redis_url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let in_flight: Option<i64> = redis::cmd("GET")
        .arg(format!("{}:user:alice:inflight", stack.name))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(in_flight.unwrap_or(0), 0, "alice's in-flight count is exact");
}

#[tokio::test]
async fn a_late_confirm_is_a_503_naming_the_task_which_runs_once_and_a_replay_answers_it() {
    let (stack, proxy, listener) = stack_behind_proxy().await;
    // The broker stores the task at once; only its confirm is late.
    proxy.set(Mode::DelayReplies(PUBLISH_TIMEOUT * 2));
    // Both at once, on the api's open connection (a new one could not even be opened).
    let (keyed, unkeyed) =
        tokio::join!(unconfirmed_submit(&stack, Some("late-1"), 1), unconfirmed_submit(&stack, None, 2));
    proxy.set(Mode::Pass);
    assert_eq!(final_status(&stack, &keyed).await, "succeeded");
    assert_eq!(final_status(&stack, &unkeyed).await, "succeeded");
    assert_eq!(replay(&stack, "late-1", 1).await, keyed, "the same key answers the same task");
    ran_once_each(&stack, &listener, &[keyed, unkeyed]).await;
}

#[tokio::test]
async fn a_publish_lost_on_the_way_is_queued_by_the_follow_up_and_runs_once() {
    let (stack, proxy, listener) = stack_behind_proxy().await;
    // A partition: the publish never reaches the broker, and no answer comes back.
    proxy.set(Mode::DropAll);
    let (keyed, unkeyed) =
        tokio::join!(unconfirmed_submit(&stack, Some("lost-1"), 1), unconfirmed_submit(&stack, None, 2));
    // The truth while the partition lasts: recorded, not run.
    for id in [&keyed, &unkeyed] {
        let (_, record) = stack.task("dev-alice", id).await;
        assert_eq!(record["status"], "queued", "{record}");
    }
    let (status, body) = submit(&stack, Some("lost-1"), 1).await;
    assert_eq!(status, 409, "a replay while the first is unsettled waits: {body}");
    tokio::time::sleep(PUBLISH_TIMEOUT).await;
    proxy.set(Mode::Pass);
    assert_eq!(final_status(&stack, &keyed).await, "succeeded");
    assert_eq!(final_status(&stack, &unkeyed).await, "succeeded");
    assert_eq!(replay(&stack, "lost-1", 1).await, keyed, "the same key answers the same task");
    ran_once_each(&stack, &listener, &[keyed, unkeyed]).await;
}

/// An api killed between recording a task and its broker's confirm (the publish lost in a
/// partition, the client never answered): another replica's sweep finds the task still
/// `queued` past the grace, publishes it, and it runs once.
#[tokio::test]
async fn a_task_whose_api_died_before_its_confirm_is_queued_by_another_replicas_sweep() {
    let grace = ("INFERPUSH_UNSETTLED_GRACE", "3s".to_owned());
    let (mut stack, proxy, listener) = stack_behind_proxy_with(vec![grace]).await;
    proxy.set(Mode::DropAll);
    let submitting = {
        let (http, url) = (stack.http().clone(), format!("{}/v1/inference", stack.api_url));
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth("dev-alice")
                .json(&json!({"model": "echo", "input": {"n": 7}}))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    stack.kill_api().await;
    assert!(submitting.await.unwrap().is_err(), "the client never got an answer");
    proxy.set(Mode::Pass);
    stack.api_url = stack.start_api_replica().await;

    let listed: Value = stack
        .http()
        .get(format!("{}/v1/inference?since=0", stack.api_url))
        .bearer_auth("dev-alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let task = &listed["tasks"][0];
    assert_eq!(task["status"], "queued", "recorded, never published: {listed}");
    let task_id = task["task_id"].as_str().unwrap().to_owned();
    let started = tokio::time::Instant::now();
    assert_eq!(final_status(&stack, &task_id).await, "succeeded");
    println!("the orphaned task was swept and ran {:?} after the replica came up", started.elapsed());
    ran_once_each(&stack, &listener, &[task_id]).await;
}
