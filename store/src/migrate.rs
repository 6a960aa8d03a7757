//! Moves what an earlier version stored under the flat key names (`P:task:ID`,
//! `P:user:U:tasks`, …) to the hash-tagged ones of [`Keys`] (`P:{user:U}:task:ID`, …), so an
//! upgrade in place keeps every task, result, idempotency key, in-flight count and event
//! log. Each key moves with `RENAMENX` (a key the new version already wrote is never
//! overwritten), and a marker (`P:{layout}`) records that it is done, so it runs once. One
//! server or Sentinel only: a cluster is new with this version, so it has nothing to move.

use std::collections::HashMap;

use inferpush_protocol::TaskId;
use redis::AsyncCommands;

use crate::StoreError;
use crate::connection::RedisConnection;
use crate::keys::Keys;

/// The layout this version writes.
pub const LAYOUT: &str = "hash-tagged";

/// What a migration moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Keys renamed.
    pub moved: usize,
    /// Old keys left where they were: their new name already existed, or their owner
    /// could not be told (an event marker whose task record is gone).
    pub left: usize,
}

/// Moves every flat-named key under `keys`' prefix to its tagged name, unless the marker
/// says it was done.
pub(crate) async fn migrate(
    connection: &RedisConnection,
    keys: &Keys,
) -> Result<Option<Migrated>, StoreError> {
    let mut connection = connection.clone();
    let marker = keys.layout();
    if connection.get::<_, Option<String>>(&marker).await?.as_deref() == Some(LAYOUT) {
        return Ok(None);
    }
    let prefix = format!("{}:", keys.prefix());
    let mut old: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", escape_glob(&prefix)))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await?;
        old.extend(batch.into_iter().filter(|key| !key[prefix.len()..].starts_with('{')));
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    // Task records first: they tell whose each task id is (event markers need it).
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut moves: Vec<(String, String)> = Vec::new();
    let mut markers: Vec<(String, String, String)> = Vec::new();
    let mut left = 0;
    for key in &old {
        let rest = &key[prefix.len()..];
        match flat_name(rest) {
            Some(Flat::Task(id)) => {
                let json: Option<String> = connection.get(key).await?;
                let user = json.as_deref().and_then(|json| {
                    serde_json::from_str::<serde_json::Value>(json).ok()?["user_id"]
                        .as_str()
                        .map(str::to_owned)
                });
                match (user, id.parse::<TaskId>()) {
                    (Some(user), Ok(task_id)) => {
                        owners.insert(id.to_owned(), user.clone());
                        moves.push((key.clone(), keys.task(&user, task_id)));
                    }
                    _ => left += 1,
                }
            }
            Some(Flat::Renamed(new)) => moves.push((key.clone(), format!("{prefix}{new}"))),
            Some(Flat::Marker { task, event }) => {
                markers.push((key.clone(), task.to_owned(), event.to_owned()))
            }
            None => {}
        }
    }
    for (key, task, event) in markers {
        match (owners.get(&task), task.parse::<TaskId>()) {
            (Some(user), Ok(task_id)) => moves.push((key, keys.event_marker(user, task_id, &event))),
            _ => left += 1,
        }
    }
    let mut moved = 0;
    for (from, to) in moves {
        let renamed: Result<bool, _> =
            redis::cmd("RENAMENX").arg(&from).arg(&to).query_async(&mut connection).await;
        match renamed {
            Ok(true) => moved += 1,
            Ok(false) => left += 1,
            // Gone meanwhile (expired): nothing to keep.
            Err(error) if error.to_string().contains("no such key") => {}
            Err(error) => return Err(error.into()),
        }
    }
    let _: () = connection.set(&marker, LAYOUT).await?;
    Ok(Some(Migrated { moved, left }))
}

/// An old key, by what follows the prefix.
enum Flat<'a> {
    /// `task:ID`: moves under its owner, read from the record.
    Task(&'a str),
    /// `event:ID:EVENT`: moves under the task's owner.
    Marker { task: &'a str, event: &'a str },
    /// Anything else: its new name, after the prefix.
    Renamed(String),
}

fn flat_name(rest: &str) -> Option<Flat<'_>> {
    if let Some(task) = rest.strip_prefix("task:") {
        return Some(match task.split_once(':') {
            None => Flat::Task(task),
            Some((id, what @ ("progress" | "stop"))) => Flat::Renamed(format!("{{task:{id}}}:{what}")),
            Some(_) => return None,
        });
    }
    if let Some(marker) = rest.strip_prefix("event:") {
        let (task, event) = marker.split_once(':')?;
        return Some(Flat::Marker { task, event });
    }
    if let Some(user_key) = rest.strip_prefix("user:") {
        // The user id may hold `:`; what it ends with says which key it is.
        for suffix in [":tasks", ":inflight", ":events"] {
            if let Some(user) = user_key.strip_suffix(suffix) {
                return Some(Flat::Renamed(format!("{{user:{user}}}{suffix}")));
            }
        }
        let (user, bucket) = user_key.rsplit_once(":held:")?;
        return Some(Flat::Renamed(format!("{{user:{user}}}:held:{bucket}")));
    }
    if let Some(idem) = rest.strip_prefix("idem:") {
        // The key is the user id, then a 64-hex-digit digest.
        let (user, digest) = idem.rsplit_once(':')?;
        return Some(Flat::Renamed(format!("{{user:{user}}}:idem:{digest}")));
    }
    match rest {
        "publishing" => Some(Flat::Renamed("{publishing}".into())),
        "publishing:tasks" => Some(Flat::Renamed("{publishing}:tasks".into())),
        "workers" => Some(Flat::Renamed("{workers}".into())),
        _ => rest.strip_prefix("worker:").map(|worker| Flat::Renamed(format!("{{workers}}:{worker}"))),
    }
}

/// `text` with the glob's special characters escaped, for `SCAN MATCH`.
fn escape_glob(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(rest: &str) -> Option<String> {
        match flat_name(rest)? {
            Flat::Renamed(new) => Some(new),
            _ => None,
        }
    }

    #[test]
    fn every_flat_name_has_its_tagged_one() {
        assert_eq!(renamed("user:a:b:tasks").as_deref(), Some("{user:a:b}:tasks"));
        assert_eq!(renamed("user:alice:held:42").as_deref(), Some("{user:alice}:held:42"));
        assert_eq!(renamed("idem:alice:00ff").as_deref(), Some("{user:alice}:idem:00ff"));
        assert_eq!(renamed("task:T:progress").as_deref(), Some("{task:T}:progress"));
        assert_eq!(renamed("publishing:tasks").as_deref(), Some("{publishing}:tasks"));
        assert_eq!(renamed("worker:w-1").as_deref(), Some("{workers}:w-1"));
        assert!(matches!(flat_name("task:T"), Some(Flat::Task("T"))));
        assert!(matches!(flat_name("event:T:inference.delta:1:2"), Some(Flat::Marker { task: "T", .. })));
        assert!(flat_name("something:else").is_none());
        assert_eq!(escape_glob("a*b[c]"), "a\\*b\\[c\\]");
    }
}
