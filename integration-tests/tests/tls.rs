//! TLS to every service, with certificates made here (a private CA, as a cluster has):
//! Soketi and Redis serve TLS themselves, RabbitMQ is reached over `amqps://` through a TLS
//! endpoint in front of the shared node. The api and the worker trust the CA through
//! `INFERPUSH_TLS_CA_FILE`; pusher-js connects over `wss://`.

use inferpush_integration_tests::node::run_node_tests;
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::json;

#[tokio::test]
async fn over_tls_to_the_push_server_redis_and_rabbitmq_a_task_runs_and_reaches_pusher_js_over_wss() {
    // Start-up already proves most of it: the api answers /readyz only once it reached
    // Redis over rediss:// and RabbitMQ over amqps://; the worker consumes over amqps://
    // only after proving its Pusher credentials with a signed HTTPS request to Soketi.
    let stack = Stack::start_with(StackOptions { tls: true, ..Default::default() }).await;
    assert!(stack.redis_url().starts_with("rediss://"), "{}", stack.redis_url());
    run_node_tests(&stack, "integration-tests/node/tls.test.mjs", &[]).await;

    // And the stored result reads back through rediss://.
    let (status, accepted) = stack.submit("dev-alice", "echo", json!({"again": true})).await;
    assert_eq!(status, 202, "{accepted}");
    let task_id = accepted["task_id"].as_str().unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, record) = stack.task("dev-alice", task_id).await;
        if record["status"] == "succeeded" {
            assert_eq!(record["output"], json!({"again": true}));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{record}\n{}", stack.logs());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let logs = stack.logs();
    assert!(logs.contains("amqps://"), "the services were reached over TLS:\n{logs}");
}
