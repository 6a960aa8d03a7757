//! The Pusher-protocol server a test stack runs: Soketi (the default) or Sockudo, as
//! `INFERPUSH_PUSH_SERVER` says, started through `scripts/push-server.sh` exactly as
//! `make run` starts it, so the suite proves the configuration users run.

use std::time::Duration;

use testcontainers::core::WaitFor;

use crate::containers::ServiceContainer;
use crate::process::{Service, free_port, workspace_root};
use crate::tls::TlsFiles;

/// How long a server may take to answer `/ready` once started.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Which server pushes the stack's events to its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushServer {
    /// Soketi 1.6.1 on Node.js (`soketi/`).
    Soketi,
    /// Sockudo, built once into the cache by `scripts/ensure-sockudo.sh`.
    Sockudo,
}

impl PushServer {
    /// The server `INFERPUSH_PUSH_SERVER` names; Soketi when unset.
    pub fn from_env() -> Self {
        match std::env::var("INFERPUSH_PUSH_SERVER").as_deref() {
            Err(_) | Ok("") | Ok("soketi") => Self::Soketi,
            Ok("sockudo") => Self::Sockudo,
            Ok(other) => panic!("INFERPUSH_PUSH_SERVER must be soketi or sockudo, not {other:?}"),
        }
    }

    /// Its name, as the setting spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Soketi => "soketi",
            Self::Sockudo => "sockudo",
        }
    }

    /// Starts the server for app `(id, key, secret)` on `127.0.0.1:{port}` (TLS with
    /// `tls`'s certificate when given) and waits until it answers `/ready`; panics with its
    /// log when it does not.
    pub async fn start(
        self,
        log_name: &str,
        port: u16,
        app: (&str, &str, &str),
        tls: Option<&TlsFiles>,
    ) -> Service {
        self.try_start(log_name, port, app, tls).await.unwrap_or_else(|log| {
            panic!("{} exited before it answered /ready on port {port}:\n{log}", self.name())
        })
    }

    /// [`Self::start`], but a server that exits before it is ready (another process took
    /// its port between `free_port` and its bind) is an `Err` with its log, so the caller
    /// can try another port. One that runs but never answers still panics, with its log.
    pub async fn try_start(
        self,
        log_name: &str,
        port: u16,
        app: (&str, &str, &str),
        tls: Option<&TlsFiles>,
    ) -> Result<Service, String> {
        let mut env = vec![
            ("INFERPUSH_PUSH_SERVER", self.name().to_owned()),
            ("PUSHER_APP_ID", app.0.to_owned()),
            ("PUSHER_APP_KEY", app.1.to_owned()),
            ("PUSHER_APP_SECRET", app.2.to_owned()),
            ("PUSHER_PORT", port.to_string()),
            ("INFERPUSH_PUSH_SERVER_METRICS_PORT", free_port().to_string()),
            ("INFERPUSH_PUSH_SERVER_GRACE_MS", "200".to_owned()),
        ];
        if let Some(files) = tls {
            env.push(("INFERPUSH_PUSH_SERVER_TLS_CERT", files.cert.display().to_string()));
            env.push(("INFERPUSH_PUSH_SERVER_TLS_KEY", files.key.display().to_string()));
        }
        let script = workspace_root().join("scripts/push-server.sh");
        let mut service = Service::start(self.name(), log_name, &script, &[], &env);
        let client = match tls {
            None => reqwest::Client::new(),
            Some(files) => {
                let ca =
                    reqwest::Certificate::from_pem(files.ca_pem().as_bytes()).expect("a PEM certificate");
                reqwest::Client::builder().add_root_certificate(ca).build().expect("an HTTPS client")
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}/ready");
        let deadline = tokio::time::Instant::now() + READY_WITHIN;
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(service);
            }
            if !service.is_running() {
                return Err(service.log_text());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} was not ready at {url} within {READY_WITHIN:?}:\n{}",
                self.name(),
                service.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server as a container of `localhost/inferpush-{soketi,sockudo}` (the container
    /// mode), configured with its own variables as a deployment would.
    pub async fn container(self, app: (&str, &str, &str)) -> ServiceContainer {
        // Each server's own names for the app, how long a stop waits, and what it logs
        // once it serves.
        let (prefix, grace, ready) = match self {
            Self::Soketi => ("SOKETI_", ("SOKETI_SHUTDOWN_GRACE_PERIOD", "200"), "Server is up and running"),
            Self::Sockudo => ("SOCKUDO_", ("SHUTDOWN_GRACE_PERIOD", "1"), "http server listening"),
        };
        let named = |what: &str, value: &str| (format!("{prefix}DEFAULT_APP_{what}"), value.to_owned());
        let env = [
            named("ID", app.0),
            named("KEY", app.1),
            named("SECRET", app.2),
            (grace.0.into(), grace.1.into()),
        ];
        let env: Vec<(&str, String)> =
            env.iter().map(|(name, value)| (name.as_str(), value.clone())).collect();
        ServiceContainer::start(self.name(), 6001, WaitFor::message_on_either_std(ready), &env).await
    }
}
