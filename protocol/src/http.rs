//! The HTTP api's request and response bodies, shared by the api (which answers with
//! them), the Rust client and the CLI (which read them), and the end-to-end tests, so a
//! renamed field breaks the build instead of a user.

use serde::{Deserialize, Serialize};

use crate::catalogue::Entry;
use crate::channel::InferenceChannel;
use crate::deadline::CancelAfter;
use crate::delivery::{Delivery, SinkKind, WebhookEvent};
use crate::envelope::TaskId;
use crate::lifecycle::{EventName, TaskStatus, status_url};
use crate::record::TaskRecord;

/// `POST /v1/inference`: what a client submits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The model's name: one of the repository's cards (`GET /v1/models` lists them).
    #[schema(examples("echo", "all-minilm-l6-v2"))]
    pub model: String,
    /// The model's input; its shape depends on the model (`GET /v1/models` says which).
    #[schema(value_type = Object, examples(json!({"text": "hello"}), json!({"texts": ["A man is eating food."]})))]
    pub input: serde_json::Value,
    /// Push the result on `private-encrypted-inference.{user}`, end-to-end encrypted. Such a
    /// task's events go to Pusher alone (no other sink carries sealed data): naming another
    /// sink, or a webhook, is a 422.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// Only these of the deployment's sinks (`GET /v1/delivery` lists them); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sinks: Option<Vec<SinkKind>>,
    /// Also send the task's events to this URL as signed webhooks (Standard Webhooks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2048, examples("https://hooks.example.com/inferpush"))]
    pub webhook: Option<String>,
    /// Which events the webhook gets; absent: all three.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_events_filter: Option<Vec<WebhookEvent>>,
    /// Not run if not started within this long (like the `Cancel-After` header): it ends
    /// `expired` and its message is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_after: Option<CancelAfter>,
}

impl SubmitRequest {
    /// A plain (not encrypted) request for `model` on `input`.
    pub fn new(model: impl Into<String>, input: serde_json::Value) -> Self {
        Self {
            model: model.into(),
            input,
            encrypted: false,
            sinks: None,
            webhook: None,
            webhook_events_filter: None,
            cancel_after: None,
        }
    }

    /// The owner's choice of where the task's events go.
    pub fn delivery(&self) -> Delivery {
        Delivery {
            sinks: self.sinks.clone(),
            webhook: self.webhook.clone(),
            webhook_events_filter: self.webhook_events_filter.clone(),
        }
    }

    /// A digest of what the request asks for (hex SHA-256 of its JSON, object keys
    /// sorted): a replay of an `Idempotency-Key` must carry the same request.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let canonical = serde_json::to_vec(self).expect("a request always serializes");
        hex::encode(sha2::Sha256::digest(canonical))
    }
}

/// Event names a client should listen for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventNames {
    /// A worker took the task.
    pub started: String,
    /// The task succeeded.
    pub completed: String,
    /// The task failed or was cancelled.
    pub failed: String,
    /// A piece of a generation's text (models that stream, such as `text-generation`).
    #[serde(default)]
    pub delta: String,
}

impl Default for EventNames {
    fn default() -> Self {
        Self {
            started: EventName::STARTED.into(),
            completed: EventName::COMPLETED.into(),
            failed: EventName::FAILED.into(),
            delta: EventName::DELTA.into(),
        }
    }
}

/// The `202 Accepted` body of a submit (also the answer to an idempotent replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The task's id.
    pub task_id: TaskId,
    /// Always `queued`: the state it was accepted in (an idempotent replay answers as the
    /// first submit did; `status_url` has where it stands now).
    pub status: TaskStatus,
    /// The channel its events go to.
    pub channel: InferenceChannel,
    /// The events to listen for there.
    pub events: EventNames,
    /// Where its state can be read (also the `Location` header).
    pub status_url: String,
    /// Where its events go: the deployment's sinks that apply to it.
    #[serde(default)]
    pub sinks: Vec<SinkKind>,
    /// Its events as server-sent events, when `sse` is among its sinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_url: Option<String>,
    /// Whether a live worker serves its model now. `false`: accepted all the same, it
    /// waits in its model's durable queue until a worker for it comes. Absent when the
    /// workers' heartbeats could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_ready: Option<bool>,
}

impl Accepted {
    /// The answer for `record`, with the status URL under `public_url`.
    pub fn of(record: &TaskRecord, public_url: &str) -> Self {
        Self {
            task_id: record.task_id,
            status: record.status,
            channel: record.channel.clone(),
            events: EventNames::default(),
            status_url: status_url(public_url, record.task_id),
            sinks: Vec::new(),
            events_url: None,
            model_ready: None,
        }
    }

    /// The same answer naming where the events go, of the deployment's `enabled` sinks.
    pub fn delivered_by(self, record: &TaskRecord, enabled: &[SinkKind]) -> Self {
        let sinks = record.delivery.sinks(enabled);
        let events_url = sinks.contains(&SinkKind::Sse).then(|| format!("{}/events", self.status_url));
        Self { sinks, events_url, ..self }
    }
}

/// One sink of `GET /v1/delivery`, and how to receive from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SinkInfo {
    /// The sink.
    pub name: SinkKind,
    /// Whether this deployment has it on.
    pub enabled: bool,
    /// How the caller receives from it: the channel, URL or topic, and what it guarantees.
    pub description: String,
    /// The caller's own channel (pusher), stream URL (sse) or topic (mqtt).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `GET /v1/delivery`: the ways this deployment can deliver a task's events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryOptions {
    /// Every sink, enabled or not.
    pub sinks: Vec<SinkInfo>,
}

/// `GET /v1/inference?since=…&limit=…`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only tasks after this point: a task id (exclusive) or Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// At most this many (default 100, at most 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
}

/// One page of the caller's tasks, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskList {
    /// The tasks.
    pub tasks: Vec<TaskRecord>,
    /// Pass as `since` to get the next page; absent when this page is the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_since: Option<TaskId>,
    /// True when more tasks follow this page (then `next_since` is set). A page may hold
    /// fewer than `limit` tasks and still have more: it is also bounded in bytes, and
    /// tasks whose results expired are skipped.
    #[serde(default)]
    pub has_more: bool,
}

/// `POST /pusher/auth` and `POST /broadcasting/auth` (form-encoded or JSON), as pusher-js
/// and Laravel Echo send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelAuthRequest {
    /// The connection's socket id.
    #[schema(examples("123456.7890123"))]
    pub socket_id: String,
    /// The channel to subscribe to.
    #[schema(examples("private-inference.alice"))]
    pub channel_name: String,
}

/// The signed subscription, as pusher-js and Laravel Echo expect it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChannelAuthResponse {
    /// `key:signature`.
    pub auth: String,
    /// Member data, for presence channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_data: Option<String>,
    /// The channel's key, for encrypted channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_secret: Option<String>,
}

/// One model of `GET /v1/models`: its card, and whether a live worker serves it; with
/// OpenAI's fields (`id`, `object`, `created`, `owned_by`) so that its SDKs list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelInfo {
    /// The name, as OpenAI's SDKs read it.
    #[serde(default)]
    pub id: String,
    /// Always `model`.
    #[serde(default)]
    pub object: String,
    /// When the card was made, Unix seconds (0: not known).
    #[serde(default)]
    pub created: u64,
    /// Who serves it.
    #[serde(default)]
    pub owned_by: String,
    /// Catalogue name.
    pub name: String,
    /// Its kind (`echo`, `text-embedding`, `tensor`, `text-generation`).
    #[serde(default)]
    pub kind: String,
    /// The card's version.
    #[serde(default)]
    pub version: String,
    /// One line about what it does.
    pub description: String,
    /// Other names it answers to (ignoring case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The shape of `input`.
    pub input: String,
    /// The shape of `output`.
    pub output: String,
    /// The largest `input` accepted, as compact JSON bytes (larger: 413).
    #[serde(default)]
    pub max_input_bytes: usize,
    /// What one task may ask of it.
    #[serde(default)]
    pub limits: ModelLimits,
    /// For an embedding model, the size of its vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    /// For a tensor model, its inputs and outputs (as `GET /v2/models/{name}` has them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors: Option<ModelTensors>,
    /// True when at least one live worker serves it (tasks for a model no worker serves
    /// are queued durably and run when one comes).
    #[serde(default)]
    pub ready: bool,
    /// How many live workers serve it.
    #[serde(default)]
    pub workers: u32,
}

/// A tensor model's inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelTensors {
    /// What it takes.
    pub inputs: Vec<crate::kserve::MetadataTensor>,
    /// What it gives.
    pub outputs: Vec<crate::kserve::MetadataTensor>,
}

/// A model's limits, from its card.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelLimits {
    /// The largest input, as compact JSON bytes.
    pub max_input_bytes: usize,
    /// Most texts in one task (text kinds).
    pub max_texts: usize,
    /// Longest text, in characters (text kinds).
    pub max_chars: usize,
    /// Tokens read per text; longer texts are truncated (text kinds).
    pub max_tokens: usize,
}

impl ModelInfo {
    /// The catalogue's entry, served by `workers` live workers.
    pub fn of(entry: &Entry, workers: u32) -> Self {
        let limits = &entry.limits;
        Self {
            id: entry.name.clone(),
            object: "model".into(),
            created: 0,
            owned_by: "inferpush".into(),
            name: entry.name.clone(),
            kind: entry.kind.name().to_owned(),
            version: entry.version.clone(),
            description: entry.description.clone(),
            aliases: entry.aliases.clone(),
            input: entry.input.clone(),
            output: entry.output.clone(),
            max_input_bytes: limits.max_input_bytes,
            limits: ModelLimits {
                max_input_bytes: limits.max_input_bytes,
                max_texts: limits.max_texts,
                max_chars: limits.max_chars,
                max_tokens: limits.max_tokens,
            },
            dimensions: entry.dimensions,
            tensors: entry.signature.as_ref().map(|signature| ModelTensors {
                inputs: signature.inputs.iter().map(Into::into).collect(),
                outputs: signature.outputs.iter().map(Into::into).collect(),
            }),
            ready: workers > 0,
            workers,
        }
    }
}

/// `GET /v1/models`: the catalogue, as `models`, and again as OpenAI's list (`object`,
/// `data`), which its SDKs' `models.list()` read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelList {
    /// Every model of the catalogue.
    pub models: Vec<ModelInfo>,
    /// Always `list`.
    #[serde(default)]
    pub object: String,
    /// The same models, for OpenAI's SDKs.
    #[serde(default)]
    pub data: Vec<ModelInfo>,
}

impl ModelList {
    /// The list of `models`.
    pub fn of(models: Vec<ModelInfo>) -> Self {
        Self { data: models.clone(), object: "list".into(), models }
    }
}

/// Every error answer: `application/problem+json` (RFC 9457).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status's reason phrase.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// The task the problem is about, when one exists (an unconfirmed submit's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// Where that task's state can be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::TaskEnvelope;

    #[test]
    fn accepted_names_the_status_url_and_the_events() {
        let record = TaskRecord::queued(&TaskEnvelope::new(
            "alice",
            "echo",
            serde_json::json!({}),
            InferenceChannel::private("alice").unwrap(),
            1,
        ));
        let json = serde_json::to_value(Accepted::of(&record, "https://api.example")).unwrap();
        assert_eq!(json["status"], "queued");
        assert_eq!(json["channel"], "private-inference.alice");
        assert_eq!(json["status_url"], format!("https://api.example/v1/inference/{}", record.task_id));
        assert_eq!(json["events"]["completed"], "inference.completed");
        assert_eq!(json["events"]["started"], "inference.started");
    }

    #[test]
    fn a_plain_submit_leaves_encrypted_out_and_unknown_fields_are_refused() {
        let json = serde_json::to_value(SubmitRequest::new("echo", serde_json::json!({}))).unwrap();
        assert_eq!(json, serde_json::json!({"model": "echo", "input": {}}));
        let hooked = serde_json::json!({"model": "echo", "input": {}, "webhook": "https://h.example/",
            "webhook_events_filter": ["completed"], "sinks": ["pusher", "webhook"]});
        let request = serde_json::from_value::<SubmitRequest>(hooked).unwrap();
        assert_eq!(request.delivery().webhook_events_filter, Some(vec![WebhookEvent::Completed]));
        let wrong = serde_json::json!({"model": "echo", "input": {}, "sinks": ["fax"]});
        assert!(serde_json::from_value::<SubmitRequest>(wrong).unwrap_err().to_string().contains("fax"));
        let extra = serde_json::json!({"model": "echo", "input": {}, "priority": 1});
        assert!(serde_json::from_value::<SubmitRequest>(extra).is_err());
    }
}
