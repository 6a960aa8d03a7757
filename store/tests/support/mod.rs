//! Redis set-ups the store's tests start for themselves from Debian's `redis-server`: a
//! Redis Cluster of three primaries, and a master with a replica behind a Sentinel. Each
//! runs on free ports in its own folder for as long as the test binary does: every server
//! sits under a small shell that watches the binary's process and kills the server when it
//! is gone, passed or not.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use inferpush_store::{Durability, RedisTarget};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("binding port 0")
}

/// Starts `redis-server` with `args`, stopped when this test binary exits.
pub fn redis_server(args: &[String]) {
    const WATCHED: &str = r#"redis-server "$@" & server=$!
trap 'kill -9 $server 2>/dev/null' EXIT
while kill -0 "$WATCH" 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 0.5; done"#;
    let mut watcher = Command::new("sh")
        .args(["-c", WATCHED, "sh"])
        .args(args)
        .env("WATCH", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting redis-server (Debian's redis-server package)");
    std::thread::spawn(move || watcher.wait());
}

/// SIGKILLs the server on `port`.
pub fn kill_server(port: u16) {
    let info = cli(port, &["info", "server"]);
    let pid = info
        .lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .map(|pid| pid.trim().to_owned())
        .expect("the server's process id");
    assert!(Command::new("kill").args(["-9", &pid]).status().unwrap().success());
}

/// `redis-cli -p port args…`'s output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output =
        Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Waits until `check` holds, at most `within`.
pub fn until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("inferpush-{name}-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn server_args(port: u16, dir: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    args.extend(["--dir".to_owned(), dir.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A Redis Cluster of three primaries, once per test binary.
pub fn cluster() -> &'static RedisTarget {
    static CLUSTER: OnceLock<RedisTarget> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let dir = folder("cluster");
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        for port in &ports {
            let config = format!("nodes-{port}.conf");
            redis_server(&server_args(
                *port,
                &dir,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &config,
                    "--cluster-node-timeout",
                    "2000",
                ],
            ));
        }
        for port in &ports {
            until(Duration::from_secs(10), "a cluster node answers", || {
                cli(*port, &["ping"]).contains("PONG")
            });
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
        for port in &ports {
            until(Duration::from_secs(20), "the cluster is ok", || {
                cli(*port, &["cluster", "info"]).contains("cluster_state:ok")
            });
        }
        RedisTarget { cluster_nodes: nodes, ..RedisTarget::default() }
    })
}

/// A master, its replica and one Sentinel watching them.
pub struct Sentinel {
    /// How the store reaches it (waiting for the replica on the writes that matter).
    pub target: RedisTarget,
    /// The master's port and the replica's.
    pub master: u16,
    pub replica: u16,
}

/// Starts a master, a replica and a Sentinel that fails over one second after the master
/// stops answering.
pub fn start_sentinel(name: &str) -> Sentinel {
    let dir = folder(&format!("sentinel-{name}"));
    let (master, replica, sentinel) = (free_port(), free_port(), free_port());
    std::fs::create_dir_all(dir.join("m")).unwrap();
    std::fs::create_dir_all(dir.join("r")).unwrap();
    redis_server(&server_args(master, &dir.join("m"), &[]));
    redis_server(&server_args(replica, &dir.join("r"), &["--replicaof", "127.0.0.1", &master.to_string()]));
    until(Duration::from_secs(10), "the master answers", || cli(master, &["ping"]).contains("PONG"));
    until(Duration::from_secs(20), "the replica is in sync", || {
        cli(replica, &["info", "replication"]).contains("master_link_status:up")
    });
    let config = dir.join("sentinel.conf");
    std::fs::write(
        &config,
        format!(
            "port {sentinel}\nbind 127.0.0.1\ndir {}\nsentinel monitor {name} 127.0.0.1 {master} 1\n\
             sentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 5000\n",
            dir.display()
        ),
    )
    .unwrap();
    redis_server(&[config.display().to_string(), "--sentinel".to_owned()]);
    until(Duration::from_secs(10), "the Sentinel names the master", || {
        cli(sentinel, &["sentinel", "get-master-addr-by-name", name]).contains(&master.to_string())
    });
    let target = RedisTarget {
        sentinels: vec![format!("127.0.0.1:{sentinel}")],
        master: name.to_owned(),
        durability: Durability { replicas: 1, timeout: Duration::from_millis(500) },
        ..RedisTarget::default()
    };
    Sentinel { target, master, replica }
}

/// One Sentinel set-up shared by a test binary's scenarios.
pub fn sentinel() -> &'static RedisTarget {
    static SENTINEL: OnceLock<RedisTarget> = OnceLock::new();
    SENTINEL.get_or_init(|| start_sentinel("shared").target)
}
