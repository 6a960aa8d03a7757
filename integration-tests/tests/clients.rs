//! The clients people use, unmodified, against the real stack: pusher-js and Laravel Echo
//! in Node, the demo page in headless Chromium, and the `inferpush` command line.

use std::process::{Output, Stdio};
use std::time::Duration;

use inferpush_integration_tests::node::{NodeDriver, run_node_tests};
use inferpush_integration_tests::process::workspace_root;
use inferpush_integration_tests::{Services, Stack, StackOptions};
use serde_json::{Value, json};

#[tokio::test]
async fn pusher_js_in_node_subscribes_submits_and_receives() {
    let stack = Stack::start().await;
    run_node_tests(&stack, "integration-tests/node/pusher-js.test.mjs", &[]).await;
}

#[tokio::test]
async fn in_containers_pusher_js_in_node_subscribes_submits_and_receives() {
    let stack =
        Stack::start_with(StackOptions { services: Services::Containers, ..Default::default() }).await;
    run_node_tests(&stack, "integration-tests/node/pusher-js.test.mjs", &[]).await;
}

#[tokio::test]
async fn laravel_echo_listens_through_broadcasting_auth_and_is_refused_other_channels() {
    let stack = Stack::start().await;
    run_node_tests(&stack, "integration-tests/node/laravel-echo.test.mjs", &[]).await;
}

#[tokio::test]
async fn pusher_js_and_laravel_echo_reconnect_after_the_push_server_restarts_and_still_receive() {
    let mut stack = Stack::start().await;
    let mut node = NodeDriver::start(&stack, "integration-tests/node/reconnect.mjs");
    let ready = node.expect_line(&["READY", "FAILED"], Duration::from_secs(30)).await;
    assert_eq!(ready.as_deref(), Some("READY"), "{:?}\n{}", node.transcript, stack.logs());

    stack.stop_push_server().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.start_push_server().await;
    node.send_line("RESTARTED").await;

    let verdict = node.expect_line(&["OK", "FAILED"], Duration::from_secs(70)).await;
    println!("{:?}", node.transcript);
    assert!(
        verdict.as_deref().is_some_and(|line| line.starts_with("OK")),
        "{:?}\n{}",
        node.transcript,
        stack.logs()
    );
    assert_eq!(node.wait(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test]
async fn the_demo_page_in_headless_chromium_submits_and_renders_results() {
    let stack = Stack::start_with(StackOptions {
        models: "echo,all-minilm-l6-v2,smollm2-135m-instruct".into(),
        ..Default::default()
    })
    .await;
    let screenshot = workspace_root().join("target/screenshots/web-demo.png");
    let _ = std::fs::remove_file(&screenshot);
    run_node_tests(
        &stack,
        "web-demo/tests/browser.test.mjs",
        &[("SCREENSHOT_PATH", screenshot.display().to_string())],
    )
    .await;
    assert!(screenshot.is_file(), "the screenshot {} was saved", screenshot.display());
    for chat in ["web-demo-chat-streaming.png", "web-demo-chat-done.png"] {
        let path = screenshot.with_file_name(chat);
        assert!(path.is_file(), "the screenshot {} was saved", path.display());
    }
}

#[tokio::test]
async fn the_demo_page_shows_a_push_server_outage_reconnects_by_itself_and_gets_the_result() {
    let mut stack = Stack::start().await;
    let mut page = NodeDriver::start(&stack, "web-demo/tests/browser-reconnect.mjs");
    let step = |line: Option<String>, want: &str, page: &NodeDriver, stack: &Stack| {
        assert_eq!(line.as_deref(), Some(want), "{:?}\n{}", page.transcript, stack.logs());
    };
    let line = page.expect_line(&["READY", "FAILED"], Duration::from_secs(60)).await;
    step(line, "READY", &page, &stack);
    stack.stop_push_server().await;
    page.send_line("STOPPED").await;
    let line = page.expect_line(&["SUBMITTED", "FAILED"], Duration::from_secs(45)).await;
    step(line, "SUBMITTED", &page, &stack);
    stack.start_push_server().await;
    page.send_line("RESTARTED").await;
    let verdict = page.expect_line(&["OK", "FAILED"], Duration::from_secs(100)).await;
    println!("{:?}", page.transcript);
    assert!(
        verdict.as_deref().is_some_and(|l| l.starts_with("OK")),
        "{:?}\n{}",
        page.transcript,
        stack.logs()
    );
    assert_eq!(page.wait(Duration::from_secs(15)).await, Some(0));
}

#[tokio::test]
async fn without_dev_mode_there_is_no_demo_page_and_no_token_endpoint() {
    let stack = Stack::start_with(StackOptions { dev_mode: false, ..Default::default() }).await;
    for (method, path) in [("GET", "/"), ("GET", "/vendor/pusher.min.js"), ("POST", "/dev/token")] {
        let request = stack.http().request(method.parse().unwrap(), format!("{}{path}", stack.api_url));
        let response = request.json(&json!({})).send().await.unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
    }
}

/// Runs the `inferpush` command line against `stack` with `args`.
async fn cli(stack: &Stack, token: Option<&str>, args: &[&str]) -> Output {
    stack.cli(token).args(args).output().await.expect("running inferpush")
}

fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_submits_waits_over_pusher_and_prints_the_result() {
    let stack = Stack::start().await;
    let input = json!({"texts": ["from the terminal"], "delay_ms": 300});
    let output = cli(
        &stack,
        Some("dev-alice"),
        &["submit", "--model", "echo", "--input", &input.to_string(), "--wait"],
    )
    .await;
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), input, "stdout is the output: {stdout}");
    assert!(stderr.contains("succeeded · echo"), "{stderr}");

    // Without --wait: the 202's essentials, and the status command reads the task back.
    let output =
        cli(&stack, Some("dev-alice"), &["submit", "--model", "echo", "--input", "{\"a\": 1}"]).await;
    let accepted: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(accepted["channel"], "private-inference.alice");
    let task_id = accepted["task_id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let output = cli(&stack, Some("dev-alice"), &["status", task_id]).await;
    let record: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["task_id"], task_id);

    // Clear errors, and nothing submitted.
    for (token, args, expected) in [
        (None, vec!["submit", "--model", "echo", "--input", "{}"], "no credential"),
        (Some("dev-alice"), vec!["submit", "--model", "echo", "--input", "{nope"], "not valid JSON"),
        (Some("dev-alice"), vec!["submit", "--model", "nope", "--input", "{}"], "422"),
        (Some("wrong-key"), vec!["submit", "--model", "echo", "--input", "{}"], "401"),
    ] {
        let output = cli(&stack, token, &args).await;
        let (stdout, stderr) = texts(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr}");
    }
}

#[tokio::test]
async fn the_cli_exits_1_with_the_reason_when_the_task_fails() {
    let mut stack = Stack::start_with(StackOptions { worker: false, ..Default::default() }).await;
    let waiting = stack
        .cli(Some("dev-alice"))
        .args(["submit", "--model", "echo", "--input", "{\"x\": 1}", "--wait", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting inferpush");
    // The task waits in the queue (no worker): cancel it, then a worker reports it.
    let task_id = loop {
        if let Some(task) = stack.tasks_since("dev-alice", 0, 10).await.first() {
            break task.task_id.to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let url = format!("{}/v1/inference/{task_id}", stack.api_url);
    let cancelled = stack.http().delete(&url).bearer_auth("dev-alice").send().await.unwrap();
    assert_eq!(cancelled.status(), 200);
    stack.start_worker().await;
    let output = waiting.wait_with_output().await.unwrap();
    let (stdout, stderr) = texts(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
}

#[test]
fn the_demo_pages_copy_of_the_lifecycle_agrees_with_the_rust_definition() {
    use inferpush_protocol::TaskStatus;
    use inferpush_protocol::http::EventNames;
    let module = workspace_root().join("web-demo/public/lifecycle.js");
    let script = format!(
        "const l = await import({:?}); \
         console.log(JSON.stringify({{statuses: l.STATUSES, final: l.FINAL_STATUSES, \
         events: l.EVENT_FOR_STATUS, bound: l.EVENTS, isFinal: l.STATUSES.map(l.isFinal)}}))",
        format!("file://{}", module.display())
    );
    let output = std::process::Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .output()
        .expect("running node");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let page: Value = serde_json::from_slice(&output.stdout).expect("JSON from node");

    let statuses: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(page["statuses"], json!(statuses));
    let finals: Vec<&str> = TaskStatus::ALL.iter().filter(|s| s.is_final()).map(|s| s.as_str()).collect();
    assert_eq!(page["final"], json!(finals));
    assert_eq!(page["isFinal"], json!(TaskStatus::ALL.map(TaskStatus::is_final)));
    let events: serde_json::Map<String, Value> = TaskStatus::ALL
        .iter()
        .filter_map(|s| s.event_name().map(|name| (s.as_str().to_owned(), json!(name))))
        .collect();
    assert_eq!(page["events"], Value::Object(events));
    assert_eq!(page["bound"], serde_json::to_value(EventNames::default()).unwrap());
}
