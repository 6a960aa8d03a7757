//! Real JavaScript clients (pusher-js, Laravel Echo, the demo page in Chromium) run by
//! Node against a test stack, which passes its addresses in the environment.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::Stack;
use crate::process::workspace_root;

/// Runs `node --test <script>` (a path from the workspace root) against `stack` with
/// `extra` environment, and fails the calling test with everything Node printed (and the
/// stack's logs) unless every test in the script passed.
pub async fn run_node_tests(stack: &Stack, script: &str, extra: &[(&str, String)]) {
    let mut node = Command::new("node");
    node.arg("--test").arg(workspace_root().join(script));
    run_client_checks(stack, node, script, extra).await;
}

/// Runs a client's checks (`command`, any language) against `stack` with its addresses and
/// `extra` in the environment, and fails the calling test with everything it printed (and
/// the stack's logs) unless it exits successfully.
pub async fn run_client_checks(stack: &Stack, mut command: Command, what: &str, extra: &[(&str, String)]) {
    let output = command
        .envs(stack.node_env())
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{text}");
    assert!(output.status.success(), "{what} failed:\n{text}\n{}", stack.logs());
}

/// A Node script driven line by line over its stdin and stdout; killed on drop.
pub struct NodeDriver {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Every line it printed so far.
    pub transcript: Vec<String>,
}

impl NodeDriver {
    /// Starts `node <script>` against `stack`.
    pub fn start(stack: &Stack, script: &str) -> Self {
        Self::start_with(stack, script, &[])
    }

    /// Starts `node <script>` against `stack`, with `extra` environment.
    pub fn start_with(stack: &Stack, script: &str, extra: &[(&str, String)]) -> Self {
        let mut child = Command::new("node")
            .arg(workspace_root().join(script))
            .envs(stack.node_env())
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting node");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Self { child, stdin, stdout, transcript: Vec::new() }
    }

    /// The next line that starts with one of `prefixes`, or `None` after `timeout` or
    /// when the script ended; the lines before it are kept in the transcript.
    pub async fn expect_line(&mut self, prefixes: &[&str], timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.stdout.next_line()).await.ok()?.ok()??;
            self.transcript.push(line.clone());
            if prefixes.iter().any(|p| line.starts_with(p)) {
                return Some(line);
            }
        }
    }

    /// Sends one line to the script.
    pub async fn send_line(&mut self, line: &str) {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await.expect("writing to node");
        self.stdin.flush().await.expect("flushing node's stdin");
    }

    /// The script's exit code (`None` if it had to be killed after `timeout`).
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => None,
        }
    }
}
