//! Each user's log of announced events, for server-sent events: the worker appends a
//! task's event once (a repeat of the same task and event is the same entry), readers
//! replay what they missed by id, and every append is also published live on Redis
//! Pub/Sub, which feeds the api replicas (and any gateway of the user's own).
//!
//! In Redis a user's log is a stream (`XADD`); its ids (`ms-seq`) are the SSE event ids.
//! Each append trims the entries older than the result TTL (`XTRIM MINID`, so an active
//! user's log ages out like their results instead of living as long as they keep
//! appending) and past about [`MAX_EVENTS_PER_USER`]; and it counts the entry's bytes in
//! the user's result-quota bucket, so what the log holds is bounded by the same quota as
//! the results.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use inferpush_protocol::TaskId;
use serde::{Deserialize, Serialize};

use crate::StoreError;
use crate::connection::RedisConnection;
use crate::keys::Keys;
use crate::redis_store::QuotaBuckets;

/// About how many events a user's log keeps (older ones are trimmed).
pub const MAX_EVENTS_PER_USER: usize = 10_000;

/// One logged event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// Its id in the user's log (`ms-seq`), increasing.
    pub id: EventId,
    /// Whose log.
    pub user_id: String,
    /// The task it announces.
    pub task_id: TaskId,
    /// The event name, e.g. `inference.completed`.
    pub event: String,
    /// The event data (JSON).
    pub data: String,
}

/// An event's id: a stream id, `ms-seq`. Ordered as the log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId {
    /// Milliseconds since the Unix epoch.
    pub ms: u64,
    /// Sequence within that millisecond.
    pub seq: u64,
}

impl std::str::FromStr for EventId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not an event id (`<ms>-<seq>`)");
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(Self { ms: ms.parse().map_err(|_| bad())?, seq: seq.parse().map_err(|_| bad())? })
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl TryFrom<String> for EventId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> Self {
        id.to_string()
    }
}

/// Where a read of a log starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After this event (a reconnecting client's `Last-Event-ID`).
    After(EventId),
    /// At this millisecond (a task's submission).
    Since(u64),
}

/// What a live subscription yields: an event, or word that some may have been missed
/// (the subscription was re-established), so readers should replay from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Live {
    /// An event as it was appended.
    Event(Arc<LoggedEvent>),
    /// The feed was interrupted; what came in between is only in the log.
    Gap,
}

/// A live feed of every user's events.
pub type LiveFeed = Pin<Box<dyn Stream<Item = Live> + Send>>;

/// Users' event logs.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `event` of `task_id` to its user's log and publishes it, unless that task's
    /// event of this name is already there; answers the entry's id either way.
    async fn append(
        &self,
        user_id: &str,
        task_id: TaskId,
        event: &str,
        data: &str,
    ) -> Result<EventId, StoreError> {
        self.append_once(user_id, task_id, event, event, data).await
    }

    /// [`Self::append`], where `once` names what makes two appends of the task the same
    /// event (its name for a lifecycle event; for a delta, its attempt and seq too).
    async fn append_once(
        &self,
        user_id: &str,
        task_id: TaskId,
        event: &str,
        once: &str,
        data: &str,
    ) -> Result<EventId, StoreError>;

    /// A user's events from `from`, oldest first, at most `limit`.
    async fn read(&self, user_id: &str, from: Start, limit: usize) -> Result<Vec<LoggedEvent>, StoreError>;

    /// Every user's events as they are appended, for as long as the feed is held; it
    /// reconnects by itself, saying [`Live::Gap`] when it did.
    fn live(&self) -> LiveFeed;
}

/// Bytes an event's entry is counted for beyond its data (its id, names, the stream's
/// per-entry overhead and its marker key).
pub const ENTRY_OVERHEAD_BYTES: usize = 128;

/// Appends an event once, trims the log by age and length, counts its bytes against the
/// user's result quota, publishes it, and answers its id.
///
/// KEYS: the user's stream, the (task, event) marker, the user's current quota bucket
/// ARGV: task id, event name, data, max stream length, ttl seconds, pub/sub channel, user,
///       bytes to count, bucket lifetime seconds
const APPEND: &str = r#"
local existing = redis.call('GET', KEYS[2])
if existing then return existing end
local id = redis.call('XADD', KEYS[1], '*', 'task', ARGV[1], 'event', ARGV[2], 'data', ARGV[3])
local ms = tonumber(string.match(id, '^(%d+)-'))
redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', ms - tonumber(ARGV[5]) * 1000))
redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[4])
redis.call('SET', KEYS[2], id, 'EX', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('INCRBY', KEYS[3], ARGV[8])
redis.call('EXPIRE', KEYS[3], ARGV[9])
redis.call('PUBLISH', ARGV[6], cjson.encode({id = id, user_id = ARGV[7], task_id = ARGV[1], event = ARGV[2], data = ARGV[3]}))
return id
"#;

/// The event logs in Redis.
#[derive(Clone)]
pub struct RedisEventLog {
    connection: RedisConnection,
    keys: Keys,
    ttl: Duration,
    quota: QuotaBuckets,
    append: Arc<redis::Script>,
}

impl RedisEventLog {
    /// Logs on `connection`'s Redis, under `keys`, kept for `ttl`, counted in the users'
    /// `quota` buckets.
    pub(crate) fn new(connection: RedisConnection, keys: Keys, ttl: Duration, quota: QuotaBuckets) -> Self {
        Self { connection, keys, ttl, quota, append: Arc::new(redis::Script::new(APPEND)) }
    }
}

type StreamEntries = Vec<(String, Vec<(String, String)>)>;

fn logged(user_id: &str, (id, fields): (String, Vec<(String, String)>)) -> Option<LoggedEvent> {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    Some(LoggedEvent {
        id: id.parse().ok()?,
        user_id: user_id.to_owned(),
        task_id: field("task")?.parse().ok()?,
        event: field("event")?,
        data: field("data")?,
    })
}

#[async_trait]
impl EventLog for RedisEventLog {
    async fn append_once(
        &self,
        user_id: &str,
        task_id: TaskId,
        event: &str,
        once: &str,
        data: &str,
    ) -> Result<EventId, StoreError> {
        let log = self.keys.events(user_id);
        let id: String = self
            .append
            .key(&log)
            .key(self.keys.event_marker(user_id, task_id, once))
            .key(self.keys.held(user_id, self.quota.current()))
            .arg(task_id.to_string())
            .arg(event)
            .arg(data)
            .arg(MAX_EVENTS_PER_USER)
            .arg(self.ttl.as_secs().max(1))
            .arg(self.keys.live_channel(user_id))
            .arg(user_id)
            .arg(data.len() + ENTRY_OVERHEAD_BYTES)
            .arg(self.quota.lifetime_secs())
            .invoke_async(&mut self.connection.clone())
            .await?;
        if once == event {
            // A lifecycle event (not a delta): a reader resuming after a failover must
            // find it.
            self.connection.replicated(&log).await?;
        }
        id.parse().map_err(|e: String| StoreError::Unavailable(e))
    }

    async fn read(&self, user_id: &str, from: Start, limit: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        let start = match from {
            Start::After(id) => format!("({id}"),
            Start::Since(ms) => format!("{ms}-0"),
        };
        let entries: StreamEntries = redis::cmd("XRANGE")
            .arg(self.keys.events(user_id))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(entries.into_iter().filter_map(|entry| logged(user_id, entry)).collect())
    }

    fn live(&self) -> LiveFeed {
        let (connection, pattern) = (self.connection.clone(), self.keys.live_channel("*"));
        Box::pin(async_stream(connection, pattern))
    }
}

/// Subscribes to `pattern`, yielding events, and a [`Live::Gap`] each time it has
/// (re)subscribed. In a cluster the subscription sits on one node (a `PUBLISH` reaches
/// every node's subscribers), the next one in turn when that one goes; behind Sentinels,
/// on the master they name at the time.
fn async_stream(connection: RedisConnection, pattern: String) -> impl Stream<Item = Live> + Send {
    use futures::StreamExt;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Live>(1024);
    tokio::spawn(async move {
        let mut wait = Duration::from_millis(100);
        for attempt in 0.. {
            let subscribed = async {
                let mut pubsub = connection.subscriber(attempt).await?.get_async_pubsub().await?;
                pubsub.psubscribe(&pattern).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = match subscribed.await {
                Ok(pubsub) => pubsub,
                Err(error) => {
                    tracing::warn!(%error, "live events: cannot subscribe to Redis; retrying");
                    if sender.is_closed() {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            wait = Duration::from_millis(100);
            // Whatever was appended before this subscription (or while none was held) is
            // only in the log: readers replay.
            if sender.send(Live::Gap).await.is_err() {
                return;
            }
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else { continue };
                match serde_json::from_str::<LoggedEvent>(&payload) {
                    Ok(event) => {
                        if sender.send(Live::Event(Arc::new(event))).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "live events: an unreadable message"),
                }
            }
            tracing::warn!("live events: the Redis subscription ended; subscribing again");
        }
    });
    tokio_stream_of(receiver)
}

fn tokio_stream_of(mut receiver: tokio::sync::mpsc::Receiver<Live>) -> impl Stream<Item = Live> + Send {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
