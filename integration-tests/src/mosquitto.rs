//! A Mosquitto broker of a test's own (the machine's `mosquitto` binary on a free port),
//! with persistence so it can be restarted mid-test without losing its sessions, and
//! password authentication with the per-user ACL the README documents.

use std::path::PathBuf;
use std::time::Duration;

use crate::process::{Service, free_port, log_dir};
use crate::tls::TlsFiles;

/// The worker's login: it may publish under `inferpush/`.
pub const WORKER: (&str, &str) = ("inferpush-worker", "worker-password-123");
/// Users' logins: each may read only `inferpush/{user}/events`.
pub const USERS: &[(&str, &str)] = &[("alice", "alice-password-123"), ("bob", "bob-password-123")];

/// The ACL of the README: the worker writes every user's topic, a user reads only their own.
pub const ACL: &str = "user inferpush-worker\ntopic write inferpush/#\n\npattern read inferpush/%u/events\n";

/// The broker; stopped on drop.
pub struct Mosquitto {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    service: Option<Service>,
}

impl Mosquitto {
    /// Writes its configuration and starts it.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// [`Self::start`], serving MQTT over TLS with `tls`'s certificate when given.
    pub async fn start_with(tls: Option<&TlsFiles>) -> Self {
        let port = free_port();
        let dir = log_dir().join(format!("mosquitto-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("creating the broker's folder");
        let passwords = dir.join("passwords");
        for (index, (user, password)) in std::iter::once(&WORKER).chain(USERS).enumerate() {
            let mut command = std::process::Command::new("mosquitto_passwd");
            if index == 0 {
                command.arg("-c");
            }
            let status =
                command.arg("-b").arg(&passwords).arg(user).arg(password).status().expect("mosquitto_passwd");
            assert!(status.success(), "mosquitto_passwd failed");
        }
        std::fs::write(dir.join("acl"), ACL).expect("writing the ACL");
        let mut config = format!(
            "user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\n\
             persistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 100000\n",
            passwords.display(),
            dir.join("acl").display(),
            dir.display()
        );
        if let Some(files) = tls {
            config.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                files.ca.display(),
                files.cert.display(),
                files.key.display()
            ));
        }
        std::fs::write(dir.join("mosquitto.conf"), config).expect("writing the configuration");
        let mut broker = Self { port, dir, service: None };
        broker.run().await;
        broker
    }

    async fn run(&mut self) {
        let config = self.dir.join("mosquitto.conf");
        let service = Service::start(
            "mosquitto",
            &format!("mosquitto-{}", self.port),
            std::path::Path::new("/usr/sbin/mosquitto"),
            &["-c", config.to_str().expect("utf-8 path")],
            &[],
        );
        self.service = Some(service);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "mosquitto did not start: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `mqtt://user:password@127.0.0.1:{port}` for the worker.
    pub fn worker_url(&self) -> String {
        format!("mqtt://{}:{}@127.0.0.1:{}", WORKER.0, WORKER.1, self.port)
    }

    /// The broker's URL with `scheme` (`mqtt` or `mqtts`) and no login.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM: it saves its sessions and queued messages), then starts it again
    /// on the same port after `down`.
    pub async fn restart(&mut self, down: Duration) {
        let mut service = self.service.take().expect("running");
        service.signal("TERM");
        service.wait_exit(Duration::from_secs(10)).await;
        tokio::time::sleep(down).await;
        self.run().await;
    }

    /// Its log, for failure messages.
    pub fn log(&self) -> String {
        self.service.as_ref().map(Service::log_text).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.service.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
