//! The container mode: the push server, RabbitMQ and Redis as containers of the images
//! that `make images` builds (`localhost/inferpush-{soketi,sockudo,rabbitmq,redis}`; the
//! push server's in [`crate::push_server`]), started with
//! testcontainers through Podman's Docker API (`DOCKER_HOST`, which `make test` points at
//! the socket it starts). Each is published on a free port of 127.0.0.1 only, chosen here
//! so a container that is killed and started again keeps its address. The api and the
//! worker stay host processes, as in the process mode.

use std::collections::HashMap;
use std::time::Duration;

use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::process::free_port;

/// The label naming the test run a container belongs to (`INFERPUSH_TEST_RUN`).
pub const RUN_LABEL: &str = "inferpush.test-run";

/// One service container, published on `127.0.0.1:{port}`.
pub struct ServiceContainer {
    container: ContainerAsync<GenericImage>,
    /// The host port it is published on.
    pub port: u16,
}

impl ServiceContainer {
    /// Starts `localhost/inferpush-{image}:latest`, publishing `container_port` on a free
    /// host port, and waits for `ready` on its output.
    pub async fn start(image: &str, container_port: u16, ready: WaitFor, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let binding = PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(port.to_string()) };
        let bindings = HashMap::from([(format!("{container_port}/tcp"), Some(vec![binding]))]);
        let mut request = GenericImage::new(format!("localhost/inferpush-{image}"), "latest".to_owned())
            .with_exposed_port(container_port.tcp())
            .with_wait_for(ready)
            .with_startup_timeout(Duration::from_secs(90))
            // scripts/test.sh removes whatever carries its run's label when it exits, so a
            // test process that dies before dropping its containers leaves none behind.
            .with_label(RUN_LABEL, std::env::var("INFERPUSH_TEST_RUN").unwrap_or_default())
            .with_host_config_modifier(move |config: &mut HostConfig| {
                config.port_bindings = Some(bindings.clone());
            });
        for (name, value) in env {
            request = request.with_env_var(*name, value.clone());
        }
        let container = request
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting the {image} container (run `make images`?): {e}"));
        Self { container, port }
    }

    /// Kills the container (SIGKILL, no grace): its clients lose their connections.
    pub async fn kill(&self) {
        self.container.stop_with_timeout(Some(0)).await.expect("killing the container");
    }

    /// Starts the killed container again, on the same port.
    pub async fn restart(&self) {
        self.container.start().await.expect("starting the container again");
    }
}

/// Redis, ready for connections.
pub async fn redis() -> ServiceContainer {
    ServiceContainer::start("redis", 6379, WaitFor::message_on_stdout("Ready to accept connections"), &[])
        .await
}

/// RabbitMQ, its startup complete.
pub async fn rabbitmq() -> ServiceContainer {
    ServiceContainer::start("rabbitmq", 5672, WaitFor::message_on_stdout("Server startup complete"), &[])
        .await
}
