//! The Pusher REST client: pushes events to the push server (Soketi, Sockudo) through its
//! signed `batch_events` endpoint.
//!
//! One actor gathers whatever events are ready (up to the server's limit per call: 10 for
//! Soketi, 100 for Sockudo) into one signed request, over reqwest's kept-alive connection
//! pool. A call that fails for a passing reason (network, 5xx, 429) is retried with capped
//! exponential backoff and jitter until it succeeds or the worker is told to abort: the
//! task's message stays unacknowledged meanwhile, so a push-server outage slows the worker
//! down but loses nothing.

use std::sync::Arc;
use std::time::Duration;

use inferpush_protocol::event::{BatchEvent, BatchEvents};
use inferpush_protocol::signature::RestRequest;
use inferpush_protocol::{AppCredentials, Clock};
use inferpush_service::TrustedCas;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

use super::{PushError, jittered};

struct Pending {
    event: BatchEvent,
    done: oneshot::Sender<Result<(), PushError>>,
}

/// A cloneable handle to the publishing actor.
#[derive(Clone)]
pub struct Publisher {
    queue: mpsc::Sender<Pending>,
}

/// Where and as whom to push.
#[derive(Clone)]
pub struct PushTarget {
    /// e.g. `http://127.0.0.1:6001`.
    pub base_url: String,
    /// The app whose secret signs each call.
    pub credentials: AppCredentials,
    /// The time each signature is stamped with (servers refuse one that is far off).
    pub clock: Arc<dyn Clock>,
    /// Authorities an `https://` server's certificate may chain to, besides the system's.
    pub trusted: TrustedCas,
    /// Most events in one `batch_events` call: the server's limit
    /// (`inferpush_service::PushServer::max_batch_events`).
    pub max_batch_events: usize,
}

impl PushTarget {
    /// An HTTP client for this server: bounded calls, its authorities trusted.
    fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder =
            reqwest::Client::builder().timeout(REQUEST_TIMEOUT).pool_idle_timeout(Duration::from_secs(60));
        if let Some(pem) = self.trusted.pem() {
            for certificate in
                reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| e.to_string())?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        builder.build().map_err(|e| {
            format!(
                "building the HTTP client: {e} (it needs the system's CA certificates, e.g. Debian's \
                 ca-certificates package, or INFERPUSH_TLS_CA_FILE)"
            )
        })
    }
}

enum Outcome {
    Delivered,
    Retry(String),
    Rejected(String),
}

impl Publisher {
    /// Starts the actor; `abort` makes pending retries give up. Fails when no HTTP client
    /// can be built (no certificate authorities at all on this system, say).
    pub fn spawn(target: PushTarget, concurrency: usize, abort: CancellationToken) -> Result<Self, String> {
        let (queue, receiver) = mpsc::channel(1024);
        let client = target.client()?;
        let actor = Actor {
            client,
            target: Arc::new(target),
            calls: Arc::new(Semaphore::new(concurrency.max(1))),
            abort,
        };
        tokio::spawn(actor.run(receiver));
        Ok(Self { queue })
    }

    /// Pushes one event and resolves once the server has accepted it.
    pub async fn push(&self, event: BatchEvent) -> Result<(), PushError> {
        let (done, answer) = oneshot::channel();
        self.queue.send(Pending { event, done }).await.map_err(|_| PushError::Aborted)?;
        answer.await.unwrap_or(Err(PushError::Aborted))
    }
}

#[derive(Clone)]
struct Actor {
    client: reqwest::Client,
    target: Arc<PushTarget>,
    calls: Arc<Semaphore>,
    abort: CancellationToken,
}

impl Actor {
    async fn run(self, mut receiver: mpsc::Receiver<Pending>) {
        loop {
            // Wait for a free call slot first: while every slot is busy, events pile up
            // in the queue and leave together in the next call.
            let permit = self.calls.clone().acquire_owned().await.expect("semaphore never closes");
            let Some(first) = receiver.recv().await else {
                break;
            };
            let mut batch = vec![first];
            while batch.len() < self.target.max_batch_events.max(1) {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let actor = self.clone();
            tokio::spawn(async move {
                actor.deliver(batch).await;
                drop(permit);
            });
        }
    }

    /// Delivers a batch; if the server refuses it as a whole, each event is tried alone so
    /// one bad event cannot sink the others.
    async fn deliver(&self, batch: Vec<Pending>) {
        let events: Vec<BatchEvent> = batch.iter().map(|p| p.event.clone()).collect();
        let abandoned = || batch.iter().all(|p| p.done.is_closed());
        match self.send_until_done(&events, abandoned).await {
            Ok(()) => batch.into_iter().for_each(|p| {
                let _ = p.done.send(Ok(()));
            }),
            Err(PushError::Rejected(reason)) if batch.len() > 1 => {
                tracing::warn!(reason, events = batch.len(), "batch refused; pushing its events one by one");
                for pending in batch {
                    let abandoned = || pending.done.is_closed();
                    let result = self.send_until_done(std::slice::from_ref(&pending.event), abandoned).await;
                    let _ = pending.done.send(result);
                }
            }
            Err(error) => batch.into_iter().for_each(|p| {
                let _ = p.done.send(Err(error.clone()));
            }),
        }
    }

    /// Sends until delivered or refused; gives up when the worker aborts, or when every
    /// caller stopped waiting (its push deadline passed), so no retry loop outlives its task.
    async fn send_until_done(
        &self,
        events: &[BatchEvent],
        abandoned: impl Fn() -> bool,
    ) -> Result<(), PushError> {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.send_once(events).await {
                Outcome::Delivered => return Ok(()),
                Outcome::Rejected(reason) => return Err(PushError::Rejected(reason)),
                Outcome::Retry(_) if abandoned() => {
                    tracing::warn!(events = events.len(), "push abandoned: nobody waits for it any more");
                    return Err(PushError::Aborted);
                }
                Outcome::Retry(reason) => {
                    let wait = jittered(backoff);
                    tracing::warn!(
                        reason,
                        retry_in_ms = wait.as_millis() as u64,
                        "push to the Pusher server failed"
                    );
                    tokio::select! {
                        _ = self.abort.cancelled() => return Err(PushError::Aborted),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn send_once(&self, events: &[BatchEvent]) -> Outcome {
        let body = serde_json::to_vec(&BatchEvents { batch: events.to_vec() })
            .expect("batch events always serialise");
        let path = format!("/apps/{}/batch_events", self.target.credentials.app_id);
        let timestamp = self.target.clock.now_secs();
        let query = self.target.credentials.sign_rest(&RestRequest {
            method: "POST",
            path: &path,
            body: &body,
            timestamp,
            params: &[],
        });
        let url = format!("{}{path}?{query}", self.target.base_url);
        let started = std::time::Instant::now();
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let (outcome, status) = match response {
            Err(error) => (Outcome::Retry(error.to_string()), None),
            Ok(response) => {
                let status = response.status().as_u16();
                let outcome = match response.text().await {
                    Ok(body) => classify(status, &body),
                    Err(error) => Outcome::Retry(format!("{status}, body unreadable: {error}")),
                };
                (outcome, Some(status))
            }
        };
        let failure = match (&outcome, status) {
            (Outcome::Delivered, _) => None,
            (_, Some(status)) => Some(crate::metrics::status_label(status)),
            (_, None) => Some("network"),
        };
        crate::metrics::push(started.elapsed(), failure);
        outcome
    }
}

/// What a Pusher server's answer means. The status alone does not say: Soketi 1.6 answers
/// errors with `200 {"error": "…", "code": 401}`, Sockudo with the real status and a JSON
/// `{"error": "…"}`, so a body with an `error` is a refusal whatever the status, judged by
/// its `code` or else the status (5xx and 429 pass, anything else is final).
fn classify(status: u16, body: &str) -> Outcome {
    let reported = serde_json::from_str::<serde_json::Value>(body).ok().and_then(|answer| {
        let error = answer.get("error")?;
        let message = error.as_str().map(str::to_owned).unwrap_or_else(|| error.to_string());
        let code = answer.get("code").and_then(serde_json::Value::as_u64).map(|c| c as u16);
        Some((code.unwrap_or(status), message))
    });
    let (code, reason) = match reported {
        Some((code, message)) => (code, format!("{code}: {message}")),
        None if (200..300).contains(&status) => return Outcome::Delivered,
        None => (status, format!("{status}: {}", body.chars().take(300).collect::<String>())),
    };
    if code >= 500 || code == 429 || (200..300).contains(&code) {
        Outcome::Retry(reason)
    } else {
        Outcome::Rejected(reason)
    }
}

/// Why [`verify_credentials`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The server answered and refused the app's signature or id.
    #[error(
        "the Pusher server at {url} refused this app ({reason}): check PUSHER_APP_ID, PUSHER_APP_KEY and \
         PUSHER_APP_SECRET against the server's app"
    )]
    Refused {
        /// The server's base URL.
        url: String,
        /// What it said.
        reason: String,
    },
    /// The server could not be asked (down, or not a Pusher server).
    #[error("the Pusher server at {url} could not be asked: {reason}")]
    Unreachable {
        /// The server's base URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Proves the app's credentials with one signed read (`GET /apps/{id}/channels`), so a
/// worker with a wrong secret refuses to start instead of counting refused pushes as done.
pub async fn verify_credentials(target: &PushTarget) -> Result<(), CredentialsError> {
    let path = format!("/apps/{}/channels", target.credentials.app_id);
    let query = target.credentials.sign_rest(&RestRequest {
        method: "GET",
        path: &path,
        body: b"",
        timestamp: target.clock.now_secs(),
        params: &[],
    });
    let url = target.base_url.clone();
    let unreachable = |reason: String| CredentialsError::Unreachable { url: url.clone(), reason };
    let client = target.client().map_err(unreachable)?;
    let response =
        client.get(format!("{url}{path}?{query}")).send().await.map_err(|e| unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(|e| unreachable(e.to_string()))?;
    match classify(status, &body) {
        Outcome::Delivered => Ok(()),
        Outcome::Rejected(reason) => Err(CredentialsError::Refused { url, reason }),
        Outcome::Retry(reason) => Err(unreachable(reason)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(status: u16, body: &str) -> &'static str {
        match classify(status, body) {
            Outcome::Delivered => "delivered",
            Outcome::Retry(_) => "retry",
            Outcome::Rejected(_) => "rejected",
        }
    }

    #[test]
    fn an_error_body_is_a_refusal_whatever_the_status() {
        assert_eq!(verdict(200, "{}"), "delivered");
        assert_eq!(verdict(200, r#"{"batch":[{}]}"#), "delivered");
        // What Soketi 1.6.1 answers to a wrong secret and to an oversize event.
        assert_eq!(verdict(200, r#"{"error":"The secret authentication failed","code":401}"#), "rejected");
        assert_eq!(
            verdict(200, r#"{"error":"The event data should be less than 100 KB.","code":413}"#),
            "rejected"
        );
        assert_eq!(verdict(200, r#"{"error":"Too many","code":429}"#), "retry");
        assert_eq!(verdict(200, r#"{"error":"busy","code":503}"#), "retry");
        assert_eq!(verdict(200, r#"{"error":"no code"}"#), "retry", "an error in a 2xx with no code");
        // Servers that use real statuses (Sockudo), with or without a JSON body.
        assert_eq!(verdict(401, r#"{"error":"Invalid signature"}"#), "rejected");
        assert_eq!(verdict(413, "too large"), "rejected");
        assert_eq!(verdict(503, "down"), "retry");
        assert_eq!(verdict(429, ""), "retry");
    }
}
