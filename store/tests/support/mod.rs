//! Redis set-ups the store's tests start for themselves: a Redis Cluster of three primaries,
//! and a master with a replica behind a Sentinel, by `scripts/redis-topology.sh` (Debian's
//! redis-server on free ports), which stops them when this test binary exits, passed or not.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use inferpush_store::{Durability, RedisTarget};

/// Starts a set-up of `kind` (`cluster` or `sentinel`) named `name`, with `env` (e.g. the
/// Sentinel's password); what the script says of it.
fn topology(kind: &str, name: &str, env: &[(&str, &str)]) -> HashMap<String, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/redis-topology.sh");
    let output = Command::new(script)
        .args([kind, name, &std::process::id().to_string()])
        .envs(env.iter().copied())
        .output()
        .expect("running scripts/redis-topology.sh");
    assert!(output.status.success(), "redis-topology.sh {kind}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// `redis-cli -p port args…`'s output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output =
        Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
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

/// A Redis Cluster of three primaries, once per test binary.
pub fn cluster() -> &'static RedisTarget {
    static CLUSTER: OnceLock<RedisTarget> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let nodes =
            topology("cluster", "store", &[])["CLUSTER_NODES"].split(',').map(str::to_owned).collect();
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
    start_sentinel_with(name, &[])
}

/// [`start_sentinel`] with settings for the script (`SENTINEL_PASSWORD`).
pub fn start_sentinel_with(name: &str, env: &[(&str, &str)]) -> Sentinel {
    let found = topology("sentinel", name, env);
    let target = RedisTarget {
        sentinels: found["SENTINELS"].split(',').map(str::to_owned).collect(),
        master: found["MASTER"].clone(),
        durability: Durability { replicas: 1, timeout: Duration::from_millis(500) },
        ..RedisTarget::default()
    };
    Sentinel {
        target,
        master: found["MASTER_PORT"].parse().unwrap(),
        replica: found["REPLICA_PORT"].parse().unwrap(),
    }
}

/// One Sentinel set-up shared by a test binary's scenarios.
pub fn sentinel() -> &'static RedisTarget {
    static SENTINEL: OnceLock<RedisTarget> = OnceLock::new();
    SENTINEL.get_or_init(|| start_sentinel("shared").target)
}
