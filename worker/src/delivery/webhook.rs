//! Delivery by webhook, as the Standard Webhooks specification has it: a POST of
//! `{type, timestamp, data}` to the task's `webhook` URL, signed with the deployment's
//! secret, with the same `webhook-id` on every attempt so receivers drop repeats.
//! The task hands its webhook to the webhook queue and is done with it; the attempts run
//! from there ([`super::webhook_queue`]). 5xx, 408, 429 and network failures are retried
//! with growing delays until `INFERPUSH_WEBHOOK_DEADLINE`; any other answer is final. Redirects are not followed, and a host that
//! resolves to a private, loopback or otherwise internal address is refused unless the
//! allow-list names it ([`GuardedResolver`]), so a task cannot make the worker call
//! inside its own network.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use inferpush_protocol::webhook::{WebhookPayload, WebhookSecret, message_id};
use inferpush_protocol::{SinkKind, TaskRecord, Topology, WebhookTargets};
use inferpush_service::TrustedCas;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio_util::sync::CancellationToken;

use super::event::result_event;
use super::webhook_queue::{Outcome, WebhookJob, WebhookQueue, settle};
use super::{EventSink, PushError};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends signed webhooks.
pub struct WebhookSink {
    client: reqwest::Client,
    secret: WebhookSecret,
    targets: Arc<WebhookTargets>,
    max_event_bytes: usize,
    result_base_url: String,
    /// Where webhooks wait for their attempts.
    pub queue: WebhookQueue,
    /// How long attempts go on.
    give_up_after: Duration,
    abort: CancellationToken,
}

/// What the sink needs.
pub struct WebhookSettings {
    /// The deployment's signing secret.
    pub secret: WebhookSecret,
    /// Which internal targets are allowed.
    pub targets: WebhookTargets,
    /// Largest event data sent inline; larger results go out as `result_url`.
    pub max_event_bytes: usize,
    /// Prefix of `result_url`.
    pub result_base_url: String,
    /// Authorities an `https://` target's certificate may chain to, besides the system's.
    pub trusted: TrustedCas,
    /// Exchange and queue names (the webhook queue's among them).
    pub topology: Topology,
    /// How long attempts go on (`INFERPUSH_WEBHOOK_DEADLINE`).
    pub give_up_after: Duration,
}

impl WebhookSink {
    /// A sink with its own HTTP client: no redirects, guarded name resolution, and no proxy
    /// (`HTTP(S)_PROXY`/`ALL_PROXY` are ignored: a proxy would resolve names past the guard).
    pub fn new(settings: WebhookSettings, abort: CancellationToken) -> Result<Self, String> {
        let targets = Arc::new(settings.targets);
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("inferpush-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { targets: targets.clone() }));
        if let Some(pem) = settings.trusted.pem() {
            for certificate in
                reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| e.to_string())?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(|e| format!("building the webhook HTTP client: {e}"))?;
        Ok(Self {
            client,
            secret: settings.secret,
            targets,
            max_event_bytes: settings.max_event_bytes,
            result_base_url: settings.result_base_url,
            queue: WebhookQueue::new(settings.topology),
            give_up_after: settings.give_up_after,
            abort,
        })
    }
}

#[async_trait]
impl EventSink for WebhookSink {
    fn kind(&self) -> SinkKind {
        SinkKind::Webhook
    }

    async fn deliver(&self, record: &TaskRecord) -> Result<(), PushError> {
        let Some(url) = &record.delivery.webhook else {
            return Ok(());
        };
        let url = self.targets.check_url(url).map_err(PushError::Rejected)?;
        let (event, _) = result_event(record, self.max_event_bytes, &self.result_base_url, None);
        let Some(name) = event.event_name() else {
            return Ok(());
        };
        let at_ms = record.finished_at_ms.or(record.started_at_ms).unwrap_or(record.submitted_at_ms);
        let payload = WebhookPayload {
            kind: name.to_owned(),
            timestamp: humantime::format_rfc3339_millis(
                SystemTime::UNIX_EPOCH + Duration::from_millis(at_ms),
            )
            .to_string(),
            data: event,
        };
        let body = serde_json::to_string(&payload).expect("payloads always serialise");
        let job = WebhookJob {
            task_id: record.task_id,
            kind: name.to_owned(),
            url: url.to_string(),
            id: message_id(record.task_id, name),
            body,
            attempt: 0,
            give_up_at_ms: now_ms() + self.give_up_after.as_millis() as u64,
        };
        self.queue.enqueue(&job, &self.abort).await
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl WebhookSink {
    /// Settles one delivery of the webhook queue: one attempt, then done or retried later.
    pub async fn handle(&self, delivery: lapin::message::Delivery) {
        settle(delivery, &self.queue, now_ms(), async |job: &WebhookJob| self.attempt(job).await).await;
    }

    /// One attempt of `job`, its target checked again.
    pub async fn attempt(&self, job: &WebhookJob) -> Outcome {
        match self.targets.check_url(&job.url) {
            Ok(url) => self.send_once(&url, &job.id, job.body.as_bytes()).await,
            Err(reason) => Outcome::Rejected(reason),
        }
    }

    /// One signed attempt; each is stamped with its own time, as the specification asks.
    async fn send_once(&self, url: &url::Url, id: &str, body: &[u8]) -> Outcome {
        let timestamp =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let response = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", self.secret.sign(id, timestamp, body))
            .body(body.to_vec())
            .send()
            .await;
        match response {
            Err(error) if is_refused_target(&error) => Outcome::Rejected(format!("{error:#}")),
            Err(error) => Outcome::Retry(error.to_string()),
            Ok(response) => classify(response.status().as_u16()),
        }
    }
}

/// Whether the request never left because the guard refused the target's addresses.
fn is_refused_target(error: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = source {
        if current.to_string().contains(REFUSED_TARGET) {
            return true;
        }
        source = current.source();
    }
    false
}

/// What a receiver's status means: 2xx delivered; 408, 429 and 5xx passing; anything else
/// (a 4xx, or a redirect, which is not followed) final.
fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry(format!("answered {status}")),
        other => Outcome::Rejected(format!("answered {other}")),
    }
}

const REFUSED_TARGET: &str = "is not an allowed webhook target";

/// Resolves names as usual, then keeps only the addresses webhooks may go to: a host
/// named in the allow-list keeps all of its own, any other only its public ones (or those
/// in an allowed network). Checking the addresses actually connected to is what stops a
/// name that points inside the network.
struct GuardedResolver {
    targets: Arc<WebhookTargets>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let targets = self.targets.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = if targets.allows_name(&host) {
                resolved
            } else {
                resolved.into_iter().filter(|address| targets.allows_address(address.ip())).collect()
            };
            if allowed.is_empty() {
                let refusal = format!(
                    "`{host}` resolves only to private, loopback or reserved addresses: it {REFUSED_TARGET} \
                     (INFERPUSH_WEBHOOK_ALLOWED_HOSTS)"
                );
                return Err(refusal.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_failures_are_retried_and_others_are_final() {
        let verdict = |status| match classify(status) {
            Outcome::Delivered => "delivered",
            Outcome::Retry(_) => "retry",
            Outcome::Rejected(_) => "final",
        };
        assert_eq!(verdict(200), "delivered");
        assert_eq!(verdict(204), "delivered");
        for passing in [408, 429, 500, 502, 503] {
            assert_eq!(verdict(passing), "retry", "{passing}");
        }
        for final_ in [301, 400, 401, 404, 410, 413] {
            assert_eq!(verdict(final_), "final", "{final_}");
        }
    }

    #[tokio::test]
    async fn a_name_of_a_loopback_address_is_refused_unless_allowed() {
        let name = |host: &str| host.parse::<Name>().unwrap();
        let refusing = GuardedResolver { targets: Arc::new(WebhookTargets::default()) };
        let error = refusing.resolve(name("localhost")).await.err().expect("refused").to_string();
        assert!(error.contains(REFUSED_TARGET), "{error}");
        let by_name =
            GuardedResolver { targets: Arc::new(WebhookTargets::parse(&["localhost".into()]).unwrap()) };
        assert!(by_name.resolve(name("localhost")).await.is_ok());
        let by_network = GuardedResolver {
            targets: Arc::new(WebhookTargets::parse(&["127.0.0.0/8".into(), "::1".into()]).unwrap()),
        };
        let addresses: Vec<_> = by_network.resolve(name("localhost")).await.ok().unwrap().collect();
        assert!(addresses.iter().all(|a| a.ip().is_loopback()) && !addresses.is_empty());
    }
}
