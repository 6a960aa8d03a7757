//! Every shell, JavaScript and Python example of the README and the book runs, as Rust's
//! doc tests do, against one real stack (RabbitMQ, Redis, the push server, the api and a
//! worker serving the models the examples use), with its documented addresses pointed at
//! that stack (see `src/examples.rs` for how a block says how it runs). A route or default
//! that changes under an example fails here, naming the file and line.

use std::process::Stdio;
use std::time::Duration;

use inferpush_integration_tests::examples::{Addresses, Example, Mode, documents, extract, point_at};
use inferpush_integration_tests::process::{bin_dir, pinned_python, workspace_root};
use inferpush_integration_tests::stack::APP_KEY;
use inferpush_integration_tests::{Stack, StackOptions};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// OpenAI's Python SDK, as the OpenAI tests pin it.
const PYTHON_PACKAGES: &str = "openai==3.57.0";
/// The longest one example may take (a chat answer on a debug build included).
const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn every_example_of_the_readme_and_the_book_runs() {
    let root = workspace_root();
    let mut examples: Vec<Example> = Vec::new();
    for file in documents(&root) {
        let name = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        examples.extend(extract(&name, &std::fs::read_to_string(&file).unwrap()));
    }
    assert!(examples.len() > 10, "the examples were not found");
    let models = "echo,all-minilm-l6-v2,all-minilm-l6-v2-onnx,smollm2-135m-instruct";
    let stack = Stack::start_with(StackOptions { models: models.into(), ..Default::default() }).await;
    let to = Addresses {
        api_url: stack.api_url.clone(),
        push_port: stack.pusher_port,
        app_key: APP_KEY.into(),
        cli: bin_dir().join("inferpush").display().to_string(),
    };
    let (mut ran, mut not_run, mut failures) = (0, 0, Vec::new());
    for example in &examples {
        let code = point_at(&example.code, &to);
        let outcome = match example.mode {
            Mode::NotRun => {
                not_run += 1;
                continue;
            }
            Mode::ToEnd => to_end(&stack, example, &code).await,
            Mode::Listens => listening(&stack, example, &code).await,
        };
        ran += 1;
        if let Err(why) = outcome {
            failures.push(format!(
                "{} ({}): {why}\n--- the example as run:\n{code}",
                example.place, example.language
            ));
        }
    }
    println!("examples: {ran} ran, {not_run} marked norun, {} failed", failures.len());
    assert!(failures.is_empty(), "{}\n\nstack logs:\n{}", failures.join("\n\n"), stack.logs());
}

/// Where a JavaScript example is written: beside the tests' node_modules, so
/// `import 'pusher-js'` resolves.
fn js_file() -> std::path::PathBuf {
    workspace_root().join(format!("integration-tests/node/.example-{}.mjs", std::process::id()))
}

/// The command that runs `code` in `language`, from a scratch folder, with the stack's CLI
/// settings and `TOKEN` set as a reader of the docs would have them.
fn command(stack: &Stack, language: &str, code: &str, scratch: &std::path::Path) -> tokio::process::Command {
    let mut command = match language {
        "python" => {
            let file = scratch.join("example.py");
            std::fs::write(&file, code).unwrap();
            let mut python = tokio::process::Command::new(pinned_python("openai", PYTHON_PACKAGES));
            python.arg(file);
            python
        }
        "js" => {
            let file = js_file();
            std::fs::write(&file, code).unwrap();
            let mut node = tokio::process::Command::new("node");
            node.arg(file);
            node
        }
        _ => {
            let mut bash = tokio::process::Command::new("bash");
            bash.args(["-euo", "pipefail", "-c", code]);
            bash
        }
    };
    command
        .current_dir(scratch)
        .env("TOKEN", "dev-alice")
        .env("INFERPUSH_API_URL", &stack.api_url)
        .env("INFERPUSH_WS_URL", stack.ws_base())
        .env("PUSHER_APP_KEY", APP_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs to its end: it must succeed and show the status lines its comments show.
async fn to_end(stack: &Stack, example: &Example, code: &str) -> Result<(), String> {
    let scratch = tempfile::tempdir().unwrap();
    let run = command(stack, &example.language, code, scratch.path()).output();
    let output =
        tokio::time::timeout(LIMIT, run).await.map_err(|_| format!("still running after {LIMIT:?}"))?;
    let output = output.map_err(|e| format!("could not start: {e}"))?;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        return Err(format!("{}\nstdout: {stdout}\nstderr: {stderr}", output.status));
    }
    for shown in example.shown_status_lines() {
        if !stdout.contains(&shown) {
            return Err(format!("its output has no `{shown}`, as the example shows\nstdout: {stdout}"));
        }
    }
    Ok(())
}

/// Runs while an echo task of dev-alice's is submitted: it must print the task's id.
async fn listening(stack: &Stack, example: &Example, code: &str) -> Result<(), String> {
    let scratch = tempfile::tempdir().unwrap();
    let mut child =
        command(stack, &example.language, code, scratch.path()).spawn().map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().unwrap();
    // Time to connect and subscribe.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, accepted) = stack.submit("dev-alice", "echo", json!({"from": example.place})).await;
    if status != 202 {
        return Err(format!("the submit answered {status}: {accepted}"));
    }
    let task_id = accepted["task_id"].as_str().unwrap_or_default().to_owned();
    let mut printed = String::new();
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = [0u8; 4096];
        while !printed.contains(&task_id) {
            match stdout.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => printed.push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
        true
    })
    .await;
    let _ = child.kill().await;
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_secs(2), err.read_to_string(&mut stderr)).await;
    }
    if example.language == "js" {
        let _ = std::fs::remove_file(js_file());
    }
    match waited {
        Ok(true) => Ok(()),
        _ => Err(format!("task {task_id} never showed in its output\nstdout: {printed}\nstderr: {stderr}")),
    }
}
