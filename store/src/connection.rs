//! Where the store's Redis is, and one connection to it whatever its shape: a single
//! server, the master a set of Sentinels names (followed across a failover without a
//! restart), or a Redis Cluster (each command sent to the shard of its keys). The scripts
//! and commands of the store run on [`RedisConnection`] alike, because every key a script
//! touches carries the same hash tag (see [`crate::Keys`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value};

use crate::StoreError;

/// How the store reaches Redis, as the settings name it.
#[derive(Debug, Clone, Default)]
pub struct RedisTarget {
    /// The server (`redis://` or `rediss://`; empty: the local default); with Sentinel or
    /// Cluster, only its user, password, database and TLS are read.
    pub url: String,
    /// Sentinels (`host:port`) that name the master; empty: no Sentinel.
    pub sentinels: Vec<String>,
    /// The master's name at the Sentinels.
    pub master: String,
    /// Any nodes of a Redis Cluster (`host:port`); empty: no Cluster.
    pub cluster_nodes: Vec<String>,
    /// The password, when not in the URL.
    pub password: Option<String>,
    /// The Sentinels' own password (`requirepass` on the Sentinels), when they ask for one.
    pub sentinel_password: Option<String>,
    /// Authorities (PEM) a `rediss://` server's certificate is checked against instead of
    /// the system's.
    pub ca_pem: Option<String>,
    /// Replicas that must hold a write that matters before it is answered.
    pub durability: Durability,
}

impl RedisTarget {
    /// One server at `url`.
    pub fn single(url: &str) -> Self {
        Self { url: url.to_owned(), ..Self::default() }
    }
}

/// Writes that must survive a failover wait until `replicas` replicas hold them (Redis's
/// `WAIT`), at most `timeout`; `replicas: 0` waits for none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durability {
    /// Replicas to wait for.
    pub replicas: u32,
    /// The longest wait; past it the write stands, acknowledged by fewer (logged).
    pub timeout: Duration,
}

/// A connection to the store's Redis, of whatever shape; cheap to clone (clones share it).
#[derive(Clone)]
pub struct RedisConnection {
    link: Link,
    durability: Durability,
}

// A clone per command either way (the store clones its connection for each), so the
// single server's larger handle is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Link {
    Single { client: redis::Client, connection: ConnectionManager },
    Sentinel(Arc<Follower>),
    Cluster { nodes: Arc<Vec<redis::Client>>, connection: ClusterConnection },
}

fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(1))
}

impl RedisConnection {
    /// A connection to `target`. Connects lazily and reconnects on its own; never blocks.
    pub fn open(target: &RedisTarget) -> Result<Self, StoreError> {
        let certificates = match (&target.ca_pem, target.url.starts_with("rediss://")) {
            (Some(pem), true) => {
                Some(redis::TlsCertificates { client_tls: None, root_cert: Some(pem.as_bytes().to_vec()) })
            }
            _ => None,
        };
        let url = if target.url.is_empty() { "redis://127.0.0.1:6379" } else { target.url.as_str() };
        let mut info = url.into_connection_info()?;
        if let Some(password) = &target.password {
            let settings = info.redis_settings().clone().set_password(password.clone());
            info = info.set_redis_settings(settings);
        }
        let link = if !target.cluster_nodes.is_empty() {
            Link::cluster(target, &info, certificates)?
        } else if !target.sentinels.is_empty() {
            Link::Sentinel(Arc::new(Follower::new(target, &info, certificates)?))
        } else {
            let client = match certificates {
                Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
                None => redis::Client::open(info)?,
            };
            let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())?;
            Link::Single { client, connection }
        };
        Ok(Self { link, durability: target.durability })
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.link, Link::Cluster { .. })
    }

    /// A client for a Pub/Sub subscription, which must sit on one server: the one server,
    /// the master as the Sentinels name it now, or the `attempt`-th of the cluster's nodes
    /// in turn (a classic `PUBLISH` in a cluster reaches every node's subscribers).
    pub(crate) async fn subscriber(&self, attempt: usize) -> RedisResult<redis::Client> {
        match &self.link {
            Link::Single { client, .. } => Ok(client.clone()),
            Link::Sentinel(follower) => follower.sentinel.lock().await.async_get_client().await,
            Link::Cluster { nodes, .. } => Ok(nodes[attempt % nodes.len()].clone()),
        }
    }

    /// Waits until the replicas [`Durability`] names hold every write made on this
    /// connection so far (those to `key`'s shard, in a cluster). Fewer in time is logged,
    /// not refused: the write stands, as it would have without replicas.
    pub(crate) async fn replicated(&self, key: &str) -> Result<(), StoreError> {
        let Durability { replicas, timeout } = self.durability;
        if replicas == 0 {
            return Ok(());
        }
        let mut wait = redis::cmd("WAIT");
        wait.arg(replicas).arg(timeout.as_millis() as u64);
        let acknowledged: i64 = match &self.link {
            Link::Cluster { connection, .. } => {
                let route = Route::with_key(key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let answer = connection.clone().route_command(wait, routing).await?;
                redis::from_redis_value(answer).map_err(|e| StoreError::Unavailable(e.to_string()))?
            }
            Link::Sentinel(follower) => {
                let (address, mut connection) = follower.connection().await?;
                let acknowledged = match wait.query_async(&mut connection).await {
                    Ok(acknowledged) => acknowledged,
                    Err(error) => {
                        follower.after(&error).await;
                        return Err(error.into());
                    }
                };
                if acknowledged < i64::from(replicas) {
                    // A node that was demoted while away and came back as a master of its own
                    // (until the Sentinels make it a replica, which discards what it took)
                    // must not keep the write: it is an error, and the caller's retry goes to
                    // the master the Sentinels name.
                    let (master, _) = follower.resolve().await?;
                    if master != address {
                        return Err(StoreError::Unavailable(format!(
                            "{address} is no longer the Redis master ({master} is): the write is retried there"
                        )));
                    }
                    return behind(&mut connection, &wait, replicas, acknowledged).await;
                }
                acknowledged
            }
            Link::Single { connection, .. } => {
                let mut connection = connection.clone();
                let acknowledged = wait.query_async(&mut connection).await?;
                if acknowledged < i64::from(replicas) {
                    return behind(&mut connection, &wait, replicas, acknowledged).await;
                }
                acknowledged
            }
        };
        if acknowledged < i64::from(replicas) {
            tracing::warn!(
                acknowledged,
                wanted = replicas,
                "a write reached fewer Redis replicas than asked within {timeout:?}"
            );
        }
        Ok(())
    }
}

/// Rounds of `WAIT` more for a master whose replicas are connected but behind.
const LAGGING_ROUNDS: usize = 4;

/// After a `WAIT` that fewer replicas than asked acknowledged, on the master: while it has a
/// replica connected (one behind under load, not gone), `WAIT` again, a few rounds; a master
/// whose replicas are gone keeps the write, logged (Redis's own availability: a write stands
/// without replicas, as `min-replicas-to-write` 0 has it).
async fn behind(
    connection: &mut ConnectionManager,
    wait: &Cmd,
    replicas: u32,
    mut acknowledged: i64,
) -> Result<(), StoreError> {
    for _ in 0..LAGGING_ROUNDS {
        let role: Vec<Value> = redis::cmd("ROLE").query_async(connection).await?;
        let connected = match role.get(2) {
            Some(Value::Array(replicas)) => replicas.len(),
            _ => 0,
        };
        if connected == 0 {
            break;
        }
        acknowledged = wait.query_async(connection).await?;
        if acknowledged >= i64::from(replicas) {
            return Ok(());
        }
    }
    tracing::warn!(acknowledged, wanted = replicas, "a write reached fewer Redis replicas than asked");
    Ok(())
}

impl Link {
    fn cluster(
        target: &RedisTarget,
        info: &redis::ConnectionInfo,
        certificates: Option<redis::TlsCertificates>,
    ) -> Result<Self, StoreError> {
        let settings = info.redis_settings();
        let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        let scheme = if tls { "rediss" } else { "redis" };
        let urls: Vec<String> =
            target.cluster_nodes.iter().map(|node| format!("{scheme}://{node}")).collect();
        let mut builder = ClusterClient::builder(urls.clone())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(5))
            .retries(3);
        if let Some(password) = settings.password() {
            builder = builder.password(password);
        }
        if let Some(username) = settings.username() {
            builder = builder.username(username);
        }
        if tls {
            builder = builder.tls(redis::TlsMode::Secure);
        }
        if let Some(certificates) = certificates.clone() {
            builder = builder.certs(certificates);
        }
        let client = builder.build()?;
        let connection =
            client.get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new());
        let nodes = urls
            .into_iter()
            .map(|url| {
                let node = url.as_str().into_connection_info()?.set_redis_settings(settings.clone());
                match certificates.clone() {
                    Some(certificates) => redis::Client::build_with_tls(node, certificates),
                    None => redis::Client::open(node),
                }
            })
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(Link::Cluster { nodes: Arc::new(nodes), connection })
    }
}

/// The master the Sentinels name, asked again whenever a command fails in a way a
/// failover causes (the old master gone, or demoted to a read-only replica).
struct Follower {
    sentinel: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<Master>>,
    /// When the Sentinels were last asked.
    asked: Mutex<Instant>,
}

/// How often the Sentinels are asked again even when nothing failed: a node demoted while it
/// was away answers as a master until they reconfigure it, without an error to notice.
const ASK_AGAIN: Duration = Duration::from_secs(2);

struct Master {
    address: String,
    connection: ConnectionManager,
}

impl Follower {
    fn new(
        target: &RedisTarget,
        info: &redis::ConnectionInfo,
        certificates: Option<redis::TlsCertificates>,
    ) -> Result<Self, StoreError> {
        let sentinels = target
            .sentinels
            .iter()
            .map(|address| Ok(format!("redis://{address}").as_str().into_connection_info()?.addr().clone()))
            .collect::<RedisResult<Vec<_>>>()?;
        let settings = info.redis_settings();
        let mut builder = SentinelClientBuilder::new(sentinels, &target.master, SentinelServerType::Master)?
            .set_client_to_redis_db(settings.db());
        if let Some(password) = settings.password() {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(username) = settings.username() {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = &target.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        if matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. }) {
            builder = builder.set_client_to_redis_tls_mode(redis::TlsMode::Secure);
            if let Some(certificates) = certificates {
                builder = builder.set_client_to_redis_certificates(certificates);
            }
        }
        Ok(Self {
            sentinel: tokio::sync::Mutex::new(builder.build()?),
            current: Mutex::new(None),
            asked: Mutex::new(Instant::now()),
        })
    }

    /// The master known now (its address and connection), asking the Sentinels when none
    /// is, or when they were last asked over [`ASK_AGAIN`] ago.
    async fn connection(&self) -> RedisResult<(String, ConnectionManager)> {
        let due = {
            let mut asked = self.asked.lock().expect("not poisoned");
            let due = asked.elapsed() >= ASK_AGAIN;
            if due {
                *asked = Instant::now();
            }
            due
        };
        if let Some(master) = self.current.lock().expect("not poisoned").as_ref().filter(|_| !due) {
            return Ok((master.address.clone(), master.connection.clone()));
        }
        match self.resolve().await {
            Ok(found) => Ok(found),
            // The Sentinels are away: the master known stays the best guess.
            Err(error) => match self.current.lock().expect("not poisoned").as_ref() {
                Some(master) => Ok((master.address.clone(), master.connection.clone())),
                None => Err(error),
            },
        }
    }

    /// Asks the Sentinels where the master is; a new address gets a new connection.
    async fn resolve(&self) -> RedisResult<(String, ConnectionManager)> {
        let client = self.sentinel.lock().await.async_get_client().await?;
        let address = client.get_connection_info().addr().to_string();
        *self.asked.lock().expect("not poisoned") = Instant::now();
        let mut current = self.current.lock().expect("not poisoned");
        if let Some(master) = current.as_ref().filter(|master| master.address == address) {
            return Ok((address, master.connection.clone()));
        }
        tracing::info!(%address, "the Redis master the Sentinels name");
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config())?;
        *current = Some(Master { address: address.clone(), connection: connection.clone() });
        Ok((address, connection))
    }

    /// After `error`, asks the Sentinels again if it may mean the master moved.
    async fn after(&self, error: &RedisError) {
        let moved = error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            || error.is_timeout()
            || matches!(error.kind(), ErrorKind::Server(redis::ServerErrorKind::ReadOnly));
        if moved && let Err(error) = self.resolve().await {
            tracing::warn!(%error, "the Sentinels do not name a reachable Redis master yet");
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.link {
            Link::Single { connection, .. } => connection.req_packed_command(cmd),
            Link::Cluster { connection, .. } => connection.req_packed_command(cmd),
            Link::Sentinel(follower) => {
                let follower = follower.clone();
                Box::pin(async move {
                    let answer = follower.connection().await?.1.req_packed_command(cmd).await;
                    if let Err(error) = &answer {
                        follower.after(error).await;
                    }
                    answer
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.link {
            Link::Single { connection, .. } => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster { connection, .. } => connection.req_packed_commands(pipeline, offset, count),
            Link::Sentinel(follower) => {
                let follower = follower.clone();
                Box::pin(async move {
                    let answer =
                        follower.connection().await?.1.req_packed_commands(pipeline, offset, count).await;
                    if let Err(error) = &answer {
                        follower.after(error).await;
                    }
                    answer
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.link {
            Link::Single { connection, .. } => connection.get_db(),
            Link::Cluster { connection, .. } => connection.get_db(),
            Link::Sentinel(_) => 0,
        }
    }
}
