//! A whole inferpush stack for one test: the push server (Soketi or Sockudo, as
//! `INFERPUSH_PUSH_SERVER` says: [`PushServer`]), api and worker on free ports, with its own
//! exchange and queue names on the shared RabbitMQ, all stopped on drop. In the container
//! mode ([`Services::Containers`]) the push server, RabbitMQ and Redis are the stack's own
//! containers instead ([`crate::containers`]).

use std::path::PathBuf;
use std::time::Duration;

use inferpush_client::api::ApiClient;
use inferpush_protocol::http::{ChannelAuthRequest, ChannelAuthResponse, SubmitRequest};
use inferpush_protocol::{TaskRecord, Topology};
use inferpush_repository::{FileCheck, Repository};
use serde_json::{Value, json};

use crate::broker::{amqp_url, broker_addr, delete_topology, publish_raw, queue_stats, wait_for_consumers};
use crate::containers::{self, ServiceContainer};
use crate::process::{Service, bin_dir, free_port, wait_http_ok, workspace_root};
use crate::push_server::PushServer;
use crate::tls::{TlsFiles, TlsTerminator};
use inferpush_client::pusher::PusherClient;

/// Pusher app used by every test stack.
pub const APP_ID: &str = "itest-app";
/// Its key.
pub const APP_KEY: &str = "itest-key";
/// Its secret.
pub const APP_SECRET: &str = "itest-secret-0123456789abcdef";

/// The encryption master key of every test stack: base64 of 32 bytes of 9.
pub const MASTER_KEY_BASE64: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";
/// The Standard Webhooks secret of every test stack.
pub const WEBHOOK_SECRET: &str = "whsec_aXRlc3Qtd2ViaG9vay1zZWNyZXQtMDEyMzQ1Njc4OQ==";
/// HS256 secret for test JWTs.
pub const JWT_SECRET: &str = "itest-jwt-secret-of-32-bytes-or-more";
/// Required `iss` of test JWTs.
pub const JWT_ISSUER: &str = "inferpush-tests";
/// Required `aud` of test JWTs.
pub const JWT_AUDIENCE: &str = "inferpush";

/// Knobs for a test stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Start a worker right away.
    pub worker: bool,
    /// The worker's prefetch.
    pub prefetch: u16,
    /// The worker's shutdown grace period, e.g. `30s`.
    pub shutdown_grace: String,
    /// Deliveries of one task before it is dead-lettered.
    pub delivery_limit: u32,
    /// Models the worker serves, comma-separated (`echo` starts fastest).
    pub models: String,
    /// The model repository of the api and the worker (`None`: the workspace's `models/`).
    pub repository: Option<PathBuf>,
    /// Run a private Redis (with an append-only file, so it can be restarted without
    /// losing data) instead of the machine's shared one.
    pub own_redis: bool,
    /// Development mode on the api (dev keys, demo page, demo tokens).
    pub dev_mode: bool,
    /// Where the push server, RabbitMQ and Redis come from.
    pub services: Services,
    /// More settings for the api (they win over the stack's own).
    pub api_env: Vec<(&'static str, String)>,
    /// More settings for the worker (they win over the stack's own).
    pub worker_env: Vec<(&'static str, String)>,
    /// TLS to every service, with a certificate authority made for the stack: the push server and the
    /// stack's own Redis serve TLS, RabbitMQ is reached over `amqps://` through a TLS
    /// endpoint, and the api and the worker trust the CA (`INFERPUSH_TLS_CA_FILE`).
    pub tls: bool,
}

/// Where a stack's push server, RabbitMQ and Redis run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Services {
    /// The push server as a host process, the machine's RabbitMQ and Redis (the fast default).
    Processes,
    /// Each as the stack's own container, through testcontainers and Podman.
    Containers,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            worker: true,
            prefetch: 64,
            shutdown_grace: "30s".into(),
            delivery_limit: 5,
            own_redis: false,
            dev_mode: true,
            models: "echo".into(),
            repository: None,
            services: Services::Processes,
            api_env: Vec::new(),
            worker_env: Vec::new(),
            tls: false,
        }
    }
}

/// The push server, api and (optionally) a worker.
pub struct Stack {
    /// Unique name of this stack: AMQP prefix and log-file prefix.
    pub name: String,
    /// `http://127.0.0.1:{port}` of the api.
    pub api_url: String,
    /// Which Pusher-protocol server the stack runs.
    pub push: PushServer,
    /// The push server's port (HTTP API and WebSockets).
    pub pusher_port: u16,
    /// The stack's RabbitMQ names.
    pub topology: Topology,
    /// The broker the stack uses (plain, for the test's own look at the queues).
    pub amqp_url: String,
    /// TLS mode: the certificates, and the TLS endpoint in front of RabbitMQ.
    pub tls: Option<(TlsFiles, TlsTerminator)>,
    options: StackOptions,
    /// Container mode: Redis and RabbitMQ, held so they live as long as the stack.
    containers: Vec<ServiceContainer>,
    /// Container mode: the push server, which tests kill and restart.
    push_container: Option<ServiceContainer>,
    redis_url: String,
    redis: Option<Service>,
    redis_dir: Option<std::path::PathBuf>,
    push_server: Option<Service>,
    api: Option<Service>,
    /// More api replicas.
    replicas: Vec<Service>,
    /// The current worker, if any.
    pub worker: Option<Service>,
    workers_started: usize,
    http: reqwest::Client,
}

impl Stack {
    /// Starts a stack with default options.
    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    /// Starts the push server, the api and, if asked, a worker; waits until each is ready.
    pub async fn start_with(options: StackOptions) -> Self {
        let name = format!("itest-{}", uuid::Uuid::now_v7().simple());
        let mut stack = Stack {
            api_url: String::new(),
            push: PushServer::from_env(),
            pusher_port: free_port(),
            topology: Topology::new(&name),
            amqp_url: amqp_url(),
            tls: None,
            containers: Vec::new(),
            push_container: None,
            name,
            redis_url: std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            redis: None,
            redis_dir: None,
            options,
            push_server: None,
            api: None,
            replicas: Vec::new(),
            worker: None,
            workers_started: 0,
            http: reqwest::Client::new(),
        };
        if stack.options.services == Services::Containers {
            let (redis, rabbitmq, push) = tokio::join!(
                containers::redis(),
                containers::rabbitmq(),
                stack.push.container((APP_ID, APP_KEY, APP_SECRET))
            );
            stack.redis_url = format!("redis://127.0.0.1:{}", redis.port);
            stack.amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", rabbitmq.port);
            stack.pusher_port = push.port;
            stack.containers = vec![redis, rabbitmq];
            stack.push_container = Some(push);
        } else if stack.options.own_redis || stack.options.tls {
            if stack.options.tls {
                let files = TlsFiles::make(&crate::process::log_dir().join(format!("{}-tls", stack.name)));
                let terminator = TlsTerminator::start(&files, broker_addr(&stack.amqp_url).await).await;
                stack.tls = Some((files, terminator));
            }
            let port = free_port();
            let scheme = if stack.options.tls { "rediss" } else { "redis" };
            stack.redis_url = format!("{scheme}://127.0.0.1:{port}");
            let dir = crate::process::log_dir().join(format!("{}-redis", stack.name));
            std::fs::create_dir_all(&dir).expect("creating the Redis folder");
            stack.redis_dir = Some(dir);
            stack.start_redis().await;
        }
        if stack.push_container.is_none() {
            stack.first_push_server().await;
        }
        let (api, api_url) = stack.launch_api("api").await;
        stack.api_url = api_url;
        stack.api = Some(api);
        if stack.options.worker {
            stack.start_worker().await;
        }
        stack
    }

    /// Starts an api process on a free port and waits until it is ready.
    async fn launch_api(&self, label: &str) -> (Service, String) {
        let mut api = Service::start(
            "inferpush-api",
            &format!("{}-{label}", self.name),
            &bin_dir().join("inferpush-api"),
            &[],
            &[
                self.common_env(),
                vec![
                    // Port 0: the api binds a free port itself and logs it, so no other
                    // process can take it between choosing and binding.
                    ("INFERPUSH_API_ADDR", "127.0.0.1:0".into()),
                    ("INFERPUSH_API_METRICS_ADDR", "127.0.0.1:0".into()),
                    ("INFERPUSH_DEV_MODE", self.options.dev_mode.to_string()),
                    ("INFERPUSH_WEB_DEMO_DIR", workspace_root().join("web-demo").display().to_string()),
                ],
                self.options.api_env.clone(),
            ]
            .concat(),
        );
        let addr = api.wait_for_log_value("listening", "addr", Duration::from_secs(30)).await;
        let url = format!("http://{addr}");
        wait_http_ok(&format!("{url}/readyz"), Duration::from_secs(30), "inferpush-api").await;
        (api, url)
    }

    /// Starts one more api replica on the same services (as behind a load balancer) and
    /// answers its URL; it stops with the stack.
    pub async fn start_api_replica(&mut self) -> String {
        let label = format!("api{}", self.replicas.len() + 2);
        let (api, url) = self.launch_api(&label).await;
        self.replicas.push(api);
        url
    }

    /// Kills the first api with SIGKILL (a crash: nothing of it runs on) and waits for it
    /// to be gone; `api_url` still names it, so point it at a replica to go on.
    pub async fn kill_api(&mut self) {
        let mut api = self.api.take().expect("an api is running");
        api.signal("KILL");
        api.wait_exit(Duration::from_secs(10)).await;
    }

    /// Stops the newest api replica with SIGTERM, as an orchestrator does, and answers how
    /// long it took to exit.
    pub async fn stop_api_replica(&mut self) -> Duration {
        let mut replica = self.replicas.pop().expect("a replica is running");
        let began = std::time::Instant::now();
        replica.signal("TERM");
        replica.wait_exit(Duration::from_secs(30)).await;
        began.elapsed()
    }

    /// The model repository the api and the worker read.
    pub fn repository(&self) -> PathBuf {
        self.options.repository.clone().unwrap_or_else(|| workspace_root().join("models"))
    }

    fn common_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("AMQP_URL", self.amqp_url.clone()),
            ("INFERPUSH_AMQP_PREFIX", self.name.clone()),
            ("INFERPUSH_DELIVERY_LIMIT", self.options.delivery_limit.to_string()),
            ("REDIS_URL", self.redis_url.clone()),
            ("INFERPUSH_REDIS_PREFIX", self.name.clone()),
            ("PUSHER_APP_ID", APP_ID.into()),
            ("PUSHER_APP_KEY", APP_KEY.into()),
            ("PUSHER_APP_SECRET", APP_SECRET.into()),
            ("PUSHER_HOST", "127.0.0.1".into()),
            ("PUSHER_PORT", self.pusher_port.to_string()),
            ("INFERPUSH_PUSH_SERVER", self.push.name().into()),
            ("PUSHER_ENCRYPTION_MASTER_KEY", MASTER_KEY_BASE64.into()),
            ("INFERPUSH_JWT_HS256_SECRET", JWT_SECRET.into()),
            ("INFERPUSH_JWT_ISSUER", JWT_ISSUER.into()),
            ("INFERPUSH_JWT_AUDIENCE", JWT_AUDIENCE.into()),
            ("INFERPUSH_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
            // Tests' webhook receivers listen on loopback.
            ("INFERPUSH_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1,localhost,::1".into()),
            ("INFERPUSH_MODEL_REPOSITORY", self.repository().display().to_string()),
        ];
        if let Some((files, terminator)) = &self.tls {
            env[0].1 = format!("amqps://guest:guest@127.0.0.1:{}/%2f", terminator.port);
            env.push(("INFERPUSH_TLS_CA_FILE", files.ca.display().to_string()));
            env.push(("PUSHER_SCHEME", "https".into()));
        }
        env
    }

    /// Starts the stack's own Redis (append-only, fsync on every write) and waits for it.
    pub async fn start_redis(&mut self) {
        let dir = self.redis_dir.clone().expect("the stack runs its own Redis");
        let port = self.redis_url.rsplit(':').next().expect("a port").to_owned();
        let listen: Vec<String> = match &self.tls {
            None => vec!["--port".into(), port.clone()],
            Some((files, _)) => [
                ("--port", "0".to_owned()),
                ("--tls-port", port.clone()),
                ("--tls-cert-file", files.cert.display().to_string()),
                ("--tls-key-file", files.key.display().to_string()),
                ("--tls-ca-cert-file", files.ca.display().to_string()),
                ("--tls-auth-clients", "no".to_owned()),
            ]
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_owned(), value])
            .collect(),
        };
        let mut args: Vec<&str> = listen.iter().map(String::as_str).collect();
        args.extend([
            "--bind",
            "127.0.0.1",
            "--dir",
            dir.to_str().expect("utf-8 path"),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ]);
        let redis = Service::start(
            "redis-server",
            &format!("{}-redis", self.name),
            std::path::Path::new("/usr/bin/redis-server"),
            &args,
            &[],
        );
        self.redis = Some(redis);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the stack's own Redis with SIGTERM (it writes its file and exits).
    pub async fn stop_redis(&mut self) {
        if let Some(mut redis) = self.redis.take() {
            redis.signal("TERM");
            redis.wait_exit(Duration::from_secs(20)).await;
        }
    }

    /// Starts the push server the first time, on another free port if another process took
    /// the one chosen before the server could bind it (nothing else knows the port yet).
    async fn first_push_server(&mut self) {
        let log_name = format!("{}-{}", self.name, self.push.name());
        let tls = self.tls.as_ref().map(|(files, _)| files);
        let mut failures = Vec::new();
        for _ in 0..3 {
            match self.push.try_start(&log_name, self.pusher_port, (APP_ID, APP_KEY, APP_SECRET), tls).await {
                Ok(service) => {
                    self.push_server = Some(service);
                    return;
                }
                Err(log) => {
                    failures.push(format!("port {}:\n{log}", self.pusher_port));
                    self.pusher_port = free_port();
                }
            }
        }
        panic!("{} exited before it was ready, three times:\n{}", self.push.name(), failures.join("\n"));
    }

    /// Starts the push server on the stack's port (again, after [`Self::stop_push_server`])
    /// and waits for `/ready`.
    pub async fn start_push_server(&mut self) {
        if let Some(container) = &self.push_container {
            container.restart().await;
            let url = format!("http://127.0.0.1:{}/ready", self.pusher_port);
            wait_http_ok(&url, Duration::from_secs(60), "the push server's container").await;
            return;
        }
        let log_name = format!("{}-{}", self.name, self.push.name());
        let tls = self.tls.as_ref().map(|(files, _)| files);
        let service = self.push.start(&log_name, self.pusher_port, (APP_ID, APP_KEY, APP_SECRET), tls).await;
        self.push_server = Some(service);
    }

    /// Kills the push server (its clients are disconnected).
    pub async fn stop_push_server(&mut self) {
        if let Some(container) = &self.push_container {
            container.kill().await;
            return;
        }
        if let Some(mut server) = self.push_server.take() {
            server.signal("KILL");
            server.wait_exit(Duration::from_secs(10)).await;
        }
    }

    /// Starts a (new) worker and waits until it consumes the echo queue.
    /// Stops the worker with SIGTERM, as an orchestrator does, and waits for it to exit;
    /// answers its log.
    pub async fn stop_worker(&mut self) -> String {
        let mut worker = self.worker.take().expect("a worker is running");
        worker.signal("TERM");
        assert!(worker.wait_exit(Duration::from_secs(60)).await.is_some(), "the worker did not stop");
        worker.log_text()
    }

    /// Kills the worker with SIGKILL, as a crash or an OOM kill does: what it held unacked
    /// goes back to the queue when its connection drops.
    pub async fn kill_worker(&mut self) {
        let mut worker = self.worker.take().expect("a worker is running");
        worker.signal("KILL");
        // Killed by a signal: no exit code; wait_exit fails if it is still there.
        worker.wait_exit(Duration::from_secs(10)).await;
    }

    /// Starts a worker serving `models` (comma-separated) from now on.
    pub async fn start_worker_for(&mut self, models: &str) {
        self.options.models = models.to_owned();
        self.start_worker().await;
    }

    pub async fn start_worker(&mut self) {
        assert!(self.worker.is_none(), "a worker is already running");
        self.workers_started += 1;
        let worker = Service::start(
            "inferpush-worker",
            &format!("{}-worker{}", self.name, self.workers_started),
            &bin_dir().join("inferpush-worker"),
            &[],
            &[
                self.common_env(),
                vec![
                    ("INFERPUSH_PREFETCH", self.options.prefetch.to_string()),
                    ("INFERPUSH_SHUTDOWN_GRACE", self.options.shutdown_grace.clone()),
                    ("INFERPUSH_METRICS_ADDR", "127.0.0.1:0".into()),
                    ("INFERPUSH_MODELS", self.options.models.clone()),
                ],
                self.options.worker_env.clone(),
            ]
            .concat(),
        );
        self.worker = Some(worker);
        let first_model = self.options.models.split(',').next().unwrap_or("echo").to_owned();
        wait_for_consumers(&self.amqp_url, &self.topology.queue(&first_model), 1, Duration::from_secs(60))
            .await;
    }

    /// The stack's own processes by name (`api`, `worker`, `soketi` or `sockudo`), for
    /// their CPU time.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        let services = [("api", &self.api), ("worker", &self.worker), (self.push.name(), &self.push_server)];
        services.into_iter().filter_map(|(name, service)| Some((name, service.as_ref()?.pid()))).collect()
    }

    /// `http://…/metrics` of the api's metrics listener.
    pub async fn api_metrics_url(&mut self) -> String {
        let api = self.api.as_mut().expect("an api is running");
        let addr = api.wait_for_log_value("metrics listener", "addr", Duration::from_secs(10)).await;
        format!("http://{addr}/metrics")
    }

    /// `http://…/metrics` of the current worker's own listener.
    pub async fn worker_metrics_url(&mut self) -> String {
        let worker = self.worker.as_mut().expect("a worker is running");
        let addr = worker.wait_for_log_value("health listener", "addr", Duration::from_secs(10)).await;
        format!("http://{addr}/metrics")
    }

    /// Messages ready and consumers attached on one of the stack's queues.
    pub async fn queue_stats(&self, queue: &str) -> (u32, u32) {
        queue_stats(&self.amqp_url, queue).await
    }

    /// Tasks ready in `model`'s queues, both lanes together.
    pub async fn queued(&self, model: &str) -> u32 {
        let mut ready = 0;
        for lane in inferpush_protocol::Lane::ALL {
            ready += queue_stats(&self.amqp_url, &self.topology.lane_queue(model, lane)).await.0;
        }
        ready
    }

    /// Publishes `body` straight to the stack's task exchange for `model`, skipping the api.
    pub async fn publish_raw(&self, model: &str, body: &[u8]) {
        publish_raw(&self.amqp_url, &self.topology, model, body).await
    }

    /// `GET /v1/inference/{task_id}` as `api_key`'s user: (status, body).
    pub async fn task(&self, api_key: &str, task_id: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/v1/inference/{task_id}", self.api_url))
            .bearer_auth(api_key)
            .send()
            .await
            .expect("api answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Every task of `api_key`'s user since `since` (Unix ms), following `next_since`
    /// (`page` at a time).
    pub async fn tasks_since(&self, api_key: &str, since: u64, page: usize) -> Vec<TaskRecord> {
        self.api_client(api_key).list_all(&since.to_string(), page).await.expect("listing tasks")
    }

    /// The Redis this stack's api and worker use.
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// The typed api client of `api_key`'s user.
    pub fn api_client(&self, api_key: &str) -> ApiClient {
        ApiClient::new(&self.api_url, api_key)
    }

    /// `ws://127.0.0.1:{push server}`.
    pub fn ws_base(&self) -> String {
        format!("ws://127.0.0.1:{}", self.pusher_port)
    }

    /// The `inferpush` command line pointed at this stack, with `token` as its credential.
    pub fn cli(&self, token: Option<&str>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(crate::process::bin_dir().join("inferpush"));
        command
            .env("INFERPUSH_API_URL", &self.api_url)
            .env("INFERPUSH_WS_URL", self.ws_base())
            .env("PUSHER_APP_KEY", APP_KEY)
            .env_remove("INFERPUSH_TOKEN")
            .kill_on_drop(true);
        if let Some(token) = token {
            command.env("INFERPUSH_TOKEN", token);
        }
        command
    }

    /// A Pusher client connected to this stack's push server.
    pub async fn pusher_client(&self) -> PusherClient {
        PusherClient::connect(&self.ws_base(), APP_KEY)
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.push.name()))
    }

    /// A client of `api_key`'s user, subscribed to `channel` through the api's auth endpoint.
    pub async fn subscribed_client(&self, api_key: &str, channel: &str) -> PusherClient {
        let mut client = self.pusher_client().await;
        let auth = self.channel_auth(api_key, &client.socket_id, channel).await;
        assert_eq!(auth.0, 200, "auth for {channel} failed: {}", auth.1);
        let signed: ChannelAuthResponse = serde_json::from_value(auth.1).expect("a channel authorisation");
        client.subscribe(channel, &signed.auth, None).await.expect("subscription accepted");
        client
    }

    /// `POST /pusher/auth`, form-encoded as pusher-js sends it: (status, body).
    pub async fn channel_auth(&self, api_key: &str, socket_id: &str, channel: &str) -> (u16, Value) {
        let request = ChannelAuthRequest { socket_id: socket_id.into(), channel_name: channel.into() };
        let body = serde_urlencoded::to_string(&request).unwrap();
        let response = self
            .http
            .post(format!("{}/pusher/auth", self.api_url))
            .bearer_auth(api_key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("api answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/inference`: (status, body).
    pub async fn submit(&self, api_key: &str, model: &str, input: Value) -> (u16, Value) {
        self.submit_body(api_key, serde_json::to_value(SubmitRequest::new(model, input)).expect("json")).await
    }

    /// `POST /v1/inference` with any body: (status, body).
    pub async fn submit_body(&self, api_key: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/v1/inference", self.api_url))
            .bearer_auth(api_key)
            .json(&body)
            .send()
            .await
            .expect("api answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Environment for a Node test against this stack.
    pub fn node_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("INFERPUSH_API_URL", self.api_url.clone()),
            ("PUSHER_HOST", "127.0.0.1".into()),
            ("PUSHER_PORT", self.pusher_port.to_string()),
            ("PUSHER_APP_KEY", APP_KEY.into()),
            ("INFERPUSH_PUSH_SERVER", self.push.name().into()),
            ("INFERPUSH_ALICE_JWT", user_jwt("alice")),
        ]
        .into_iter()
        .chain(self.tls.iter().map(|(files, _)| ("NODE_EXTRA_CA_CERTS", files.ca.display().to_string())))
        .collect()
    }

    /// Logs of every process, for failure messages.
    pub fn logs(&self) -> String {
        [&self.redis, &self.push_server, &self.api, &self.worker]
            .into_iter()
            .flatten()
            .chain(&self.replicas)
            .map(|s| format!("== {} ==\n{}", s.log_path().display(), s.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Children are killed by kill_on_drop; the names on the shared broker go too.
        self.worker.take();
        self.replicas.clear();
        self.api.take();
        self.push_server.take();
        self.redis.take();
        if let Some(dir) = self.redis_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if self.options.services == Services::Containers {
            // The broker goes with its container.
            return;
        }
        let (url, topology) = (self.amqp_url.clone(), self.topology.clone());
        let repository = self.repository();
        let cleanup = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let repository = Repository::load(&repository, FileCheck::None).unwrap_or_default();
                runtime.block_on(delete_topology(&url, &topology, &repository.names()));
            }
        });
        let _ = cleanup.join();
    }
}

/// A JWT for `user` that the stack's api accepts (HS256, its issuer and audience, 10 min).
pub fn user_jwt(user: &str) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"sub": user, "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "iat": now, "exp": now + 600});
    encode(&Header::default(), &claims, &EncodingKey::from_secret(JWT_SECRET.as_bytes()))
        .expect("HS256 encodes")
}
