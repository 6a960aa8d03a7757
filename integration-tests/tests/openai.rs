//! `POST /v1/embeddings` with OpenAI's own SDKs, from PyPI and npm, against the real
//! stack (RabbitMQ, Redis, Soketi, a worker running all-MiniLM-L6-v2), and the paths
//! beyond OpenAI's: past the wait the task is named and its result still arrives;
//! `Prefer: respond-async` answers 202 and the result is pushed.

use std::time::Duration;

use inferpush_integration_tests::node::{run_client_checks, run_node_tests};
use inferpush_integration_tests::process::{pinned_python, workspace_root};
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::{Value, json};

/// OpenAI's Python SDK, pinned.
const PYTHON_SDK: &str = "openai==3.57.0";

async fn minilm_stack() -> Stack {
    Stack::start_with(StackOptions { models: "all-minilm-l6-v2".into(), ..Default::default() }).await
}

fn reference_json() -> String {
    workspace_root().join("worker/tests/fixtures/minilm-reference.json").display().to_string()
}

#[tokio::test]
async fn openais_python_and_node_sdks_get_embeddings_and_their_usual_errors() {
    let stack = minilm_stack().await;
    let env = [("INFERPUSH_API_KEY", "dev-alice".to_owned()), ("REFERENCE_JSON", reference_json())];

    let mut python = tokio::process::Command::new(pinned_python("openai", PYTHON_SDK));
    python.arg(workspace_root().join("integration-tests/python/openai_client.py"));
    run_client_checks(&stack, python, "the Python SDK's checks", &env).await;

    run_node_tests(&stack, "integration-tests/node/openai.test.mjs", &env).await;

    // Every call was a task like any other: listed among alice's (pages are bounded in
    // bytes, and a result of 100 vectors is large).
    let (mut minilm, mut since) = (0, String::new());
    loop {
        let page = stack
            .http()
            .get(format!("{}/v1/inference?limit=500{since}", stack.api_url))
            .bearer_auth("dev-alice")
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        minilm +=
            page["tasks"].as_array().unwrap().iter().filter(|t| t["model"] == "all-minilm-l6-v2").count();
        match page["next_since"].as_str() {
            Some(next) if page["has_more"] == true => since = format!("&since={next}"),
            _ => break,
        }
    }
    // 4 answered calls from Python, 3 from Node; the refused ones queued nothing.
    assert_eq!(minilm, 7, "every answered SDK call is one task, and no refused one is");
}

async fn post_embeddings(stack: &Stack, prefer: &str, input: Value) -> reqwest::Response {
    stack
        .http()
        .post(format!("{}/v1/embeddings", stack.api_url))
        .bearer_auth("dev-alice")
        .header("prefer", prefer)
        .json(&json!({"model": "all-minilm-l6-v2", "input": input}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn past_the_wait_the_task_is_named_and_respond_async_pushes_the_result() {
    let stack = minilm_stack().await;
    let mut alice = stack.subscribed_client("dev-alice", "private-inference.alice").await;

    // A wait of 0: answered 504 at once, naming the task, whose result is kept.
    let late = post_embeddings(&stack, "wait=0", json!(["not waited for"])).await;
    assert_eq!(late.status(), 504);
    assert_eq!(late.headers()["x-should-retry"], "false");
    let error: Value = late.json().await.unwrap();
    assert_eq!(error["error"]["type"], "timeout_error", "{error}");
    let task_id = error["error"]["task_id"].as_str().expect("the task is named").to_owned();
    let mut record = Value::Null;
    for _ in 0..300 {
        record = stack.task("dev-alice", &task_id).await.1;
        if record["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(record["status"], "succeeded", "{record}\n{}", stack.logs());
    assert_eq!(record["output"]["embeddings"][0].as_array().unwrap().len(), 384);
    assert!(record["output"]["tokens"].as_u64().unwrap() > 2);

    // respond-async: 202 with the task, and the result is pushed.
    let accepted = post_embeddings(&stack, "respond-async", json!("pushed, not waited for")).await;
    assert_eq!(accepted.status(), 202);
    let accepted: Value = accepted.json().await.unwrap();
    let pushed = loop {
        let event = alice
            .next_event("inference.completed", Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("no result was pushed\n{}", stack.logs()));
        if event.json()["task_id"] == accepted["task_id"] {
            break event.json();
        }
    };
    assert_eq!(pushed["output"]["embeddings"][0].as_array().unwrap().len(), 384);
}
