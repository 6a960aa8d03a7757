//! Child processes that are always stopped: on drop, even when a test panics.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("binding port 0")
}

/// The workspace root (the folder holding `Cargo.toml` and `soketi/`).
pub fn workspace_root() -> PathBuf {
    // Read at run time first (cargo sets it for the tests it runs): one CARGO_TARGET_DIR is
    // shared between checkouts, and cargo may reuse this crate compiled in another one.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().expect("integration-tests lives in the workspace").to_path_buf()
}

/// The Python of a virtualenv holding exactly `packages` (pinned PyPI packages), made
/// once in the cache by `scripts/venv.sh` under `name`.
pub fn pinned_python(name: &str, packages: &str) -> String {
    let venv = std::process::Command::new(workspace_root().join("scripts/venv.sh"))
        .args([name, packages])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running scripts/venv.sh");
    assert!(venv.status.success(), "installing {packages}");
    format!("{}/bin/python", String::from_utf8_lossy(&venv.stdout).trim())
}

/// Folder of the built `inferpush-api` and `inferpush-worker`: `INFERPUSH_BIN_DIR`, else
/// the profile folder this binary was built into (a test binary sits in its `deps/`, the
/// load generator in the folder itself).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("INFERPUSH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let folder = exe.parent().expect("a binary sits in a folder");
    if folder.file_name().is_some_and(|name| name == "deps") {
        folder.parent().expect("target/<profile>/deps").to_path_buf()
    } else {
        folder.to_path_buf()
    }
}

/// Where child logs go: `target/itest-logs/`.
pub fn log_dir() -> PathBuf {
    let dir = bin_dir().join("..").join("itest-logs");
    std::fs::create_dir_all(&dir).expect("creating the log folder");
    dir
}

/// A running child process whose output goes to a log file.
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `program` with `args` and `env`, logging to `<log_dir>/<log_name>.log`.
    pub fn start(name: &str, log_name: &str, program: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        assert!(
            program.exists(),
            "{} not found: build the workspace first (`cargo build --workspace`, which `make test` runs)",
            program.display()
        );
        let log = log_dir().join(format!("{log_name}.log"));
        let out = File::create(&log).expect("creating a log file");
        let err = out.try_clone().expect("cloning a file handle");
        let mut command = Command::new(program);
        // From the workspace's root, as `make run` runs them (relative defaults such as the
        // model repository `models/` resolve there).
        command
            .current_dir(workspace_root())
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", std::env::var("ITEST_RUST_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Service { name: name.to_owned(), child, log }
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is running")
    }

    /// The log file's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log so far, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `TERM`, `KILL`) with the system's `kill`.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => panic!("{} did not exit within {timeout:?}; log: {}", self.name, self.log.display()),
        }
    }

    /// The first value of `key=` on a log line containing `message`, waiting for it up to
    /// `timeout`; panics with the log if the process exits first or it never appears.
    pub async fn wait_for_log_value(&mut self, message: &str, key: &str, timeout: Duration) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        let needle = format!("{key}=");
        loop {
            let text = self.log_text();
            let found = text.lines().filter(|line| line.contains(message)).find_map(|line| {
                // A JSON line (INFERPUSH_LOG_FORMAT=json) holds the value among its fields.
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
                    return json["fields"][key].as_str().map(str::to_owned);
                }
                let value = line.split_once(&needle)?.1;
                Some(value.split_whitespace().next().unwrap_or_default().to_owned())
            });
            if let Some(value) = found {
                return value;
            }
            assert!(self.is_running(), "{} exited before logging {message:?}:\n{text}", self.name);
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not log {message:?} within {timeout:?}:\n{text}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Polls `url` until it answers 200, or panics after `timeout` with `what` in the message.
pub async fn wait_http_ok(url: &str, timeout: Duration, what: &str) {
    wait_ok(&reqwest::Client::new(), url, timeout, what).await
}

async fn wait_ok(client: &reqwest::Client, url: &str, timeout: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} was not ready at {url} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
