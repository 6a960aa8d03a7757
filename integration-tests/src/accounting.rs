//! The end of every fault test: was anything that got a 202 lost?

use std::collections::HashSet;
use std::time::Duration;

use inferpush_client::api::ApiClient;

use crate::listener::Seen;

/// What happened to a set of accepted tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounting {
    /// Tasks that got a 202.
    pub accepted: usize,
    /// Of those, in a final state.
    pub terminal: usize,
    /// Of those, readable by their owner with `GET /v1/inference/{id}`.
    pub retrievable: usize,
    /// Of those, whose result event reached the owner's channel live.
    pub delivered_live: usize,
    /// Result events beyond the first per task (from redeliveries).
    pub duplicates: usize,
    /// Not delivered live but found by `GET /v1/inference?since=`.
    pub caught_up: usize,
    /// Neither final and retrievable, nor delivered or caught up.
    pub lost: usize,
}

impl std::fmt::Display for Accounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "accepted={} terminal={} retrievable={} delivered_live={} duplicates={} caught_up={} lost={}",
            self.accepted,
            self.terminal,
            self.retrievable,
            self.delivered_live,
            self.duplicates,
            self.caught_up,
            self.lost
        )
    }
}

/// Waits (up to `timeout`) until every task of `ids` is final as its owner reads it
/// through `api`; answers those that are.
pub async fn wait_final(api: &ApiClient, ids: &[String], timeout: Duration) -> HashSet<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut finals: HashSet<String> = HashSet::new();
    loop {
        let pending: Vec<&String> = ids.iter().filter(|id| !finals.contains(*id)).collect();
        for id in pending {
            let url = inferpush_protocol::lifecycle::status_url("", id.parse().expect("a task id"));
            if api.task(&url).await.is_ok_and(|record| record.status.is_final()) {
                finals.insert(id.clone());
            }
        }
        if finals.len() == ids.len() || tokio::time::Instant::now() >= deadline {
            return finals;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to `timeout`) for every accepted task to be final, then counts, reading the
/// tasks as their owner through `api` (a stack's api, or a cluster's balancer).
pub async fn account(api: &ApiClient, accepted: &[String], seen: &Seen, timeout: Duration) -> Accounting {
    let finals = wait_final(api, accepted, timeout).await;
    let listed: HashSet<String> = api
        .list_all("0", 500)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|t| t.status.is_final())
        .map(|t| t.task_id.to_string())
        .collect();
    let live: HashSet<&String> = accepted.iter().filter(|id| seen.results.contains_key(*id)).collect();
    let caught_up = accepted.iter().filter(|id| !live.contains(id) && listed.contains(*id)).count();
    let duplicates = accepted.iter().filter_map(|id| seen.results.get(id)).map(|n| n.saturating_sub(1)).sum();
    let lost = accepted
        .iter()
        .filter(|id| !finals.contains(*id) || !(live.contains(id) || listed.contains(*id)))
        .count();
    Accounting {
        accepted: accepted.len(),
        terminal: finals.len(),
        retrievable: finals.len(),
        delivered_live: live.len(),
        duplicates,
        caught_up,
        lost,
    }
}
